# frozen_string_literal: true

module FiberJob
  # What the gem uses and an app does not: the native engine (`Internal::Native`,
  # defined by src/ruby/) and the Ruby that drives it — enqueueing
  # (`internal/enqueue.rb`), running jobs (`processor.rb`, `taken_job.rb`,
  # `executor/`), arguments, limits, logs and events. `FiberJob::Internal` is a private
  # constant: code outside the gem cannot name it, so none of this is public API.
  #
  # Here: the native objects of this process and configuration, one per concern of
  # `crate::client`, all on one connection (`Native::Handle`).
  module Internal
    class << self
      def enqueue = native(:Enqueue)
      def admin = native(:Admin)
      def class_metrics = native(:ClassMetrics)
      def jobs = native(:Jobs)
      def dead_set = native(:DeadSet)
      def flow = native(:Flow)
      def batches = native(:Batches)
      def cron = native(:Cron)
      def checkpoints = native(:Checkpoints)

      # The connection the objects above share.
      def handle
        fresh_after_fork
        @handle ||= Native::Handle.new(FiberJob.config.connection, FiberJob.config.prefix)
      end

      # Drops them: the next call connects with the configuration as it is then.
      def reset!
        @handle = nil
        @natives = {}
      end

      private

      def native(name)
        (@natives ||= {})[name] ||= Native.const_get(name).new(handle)
      end

      # A forked child builds its own native objects (the runtime notices the new pid).
      def fresh_after_fork
        return if @pid == Process.pid

        @pid = Process.pid
        reset!
      end
    end
  end
end
