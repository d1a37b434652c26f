# frozen_string_literal: true

module FiberJob
  module Internal
    module Native
      # A job the engine handed to this process (built once per job by
      # `src/ruby/worker.rs`): `id`, `queue` and `class_name` (frozen, shared by the jobs
      # of a queue or class), `args`, `jid`, `retry_count`, `throttled` (true, else nil:
      # then `begin` is called right before its perform, to log its start),
      # and the verbs that end it — exactly one of `ack`, `fail`, `give_back` (to the
      # front of its queue), `requeue` (to the back) or `bury` (to the dead set) — plus
      # `payload`, its raw JSON. Executors take these; the Processor runs them.
      #
      class TakenJob
        # A failed run: retried at `retry_at` (epoch seconds; first among retries when
        # `priority`), or dead when `retry_at` is nil.
        def fail(error_class:, message:, backtrace:, retry_at:, priority:)
          _fail(error_class, message, backtrace, retry_at, priority)
        end
      end
    end
  end
end
