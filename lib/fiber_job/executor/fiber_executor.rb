# frozen_string_literal: true

require_relative "clock"

require "async"
require "async/condition"
require "io/wait"
require_relative "fiber_watchdog"

module FiberJob
  module Executor
    # Runs jobs as fibers under the async gem's reactor, one fiber per running job, so
    # I/O-bound jobs (sleep, sockets, HTTP) interleave on one thread. The engine hands
    # out at most each queue's concurrency, so the number of fibers is exact.
    #
    # The dispatcher fiber never blocks its thread: when the engine has nothing to hand
    # out, it waits on the engine's wake socket (an IO the scheduler understands).
    #
    # Uses only what async 1.30 and 2.x share: Kernel#Async, Task#async, Task#stop,
    # Task.current, Task#with_timeout, Async::Condition, Async::Notification,
    # Async::TimeoutError.
    class FiberExecutor
      # Jobs taken per call into the engine: one call hands out a batch.
      BATCH = 256

      # Job timeouts go through one FiberWatchdog, not Timeout.timeout, which would
      # raise in whatever fiber runs when its thread fires (async 1.30's scheduler does
      # not implement timeout_after), nor a timer per job.
      attr_reader :watchdog

      # @param processor_for [#call] builds the Processor, given the job timeout hook
      def initialize(native, shutdown_timeout, &processor_for)
        @native = native
        @watchdog = FiberWatchdog.new
        @processor = processor_for.call(->(seconds, &block) { @watchdog.guard(seconds, &block) })
        @shutdown_timeout = shutdown_timeout
      end

      def run
        wake = IO.for_fd(@native._wake_fd, autoclose: false)
        Async do |task|
          running = {}
          finished = Async::Condition.new
          watchdog = task.async { |t| @watchdog.run(t) }
          dispatch(task, wake, running, finished)
          drain(task, running, finished)
          watchdog.stop
        end
      ensure
        wake&.close
      end

      private

      def dispatch(task, wake, running, finished)
        loop do
          jobs = @native._take(BATCH)
          if jobs.empty?
            break if @native._stopping?

            wake.wait_readable
            wake.read_nonblock(4096, exception: false)
            next
          end
          jobs.each { |tuple| start(task, tuple, running, finished) }
        end
      end

      def start(task, tuple, running, finished)
        task.async do |child|
          running[child] = tuple
          @processor.run(tuple)
        rescue Async::Stop
          nil # given back to the queue by the processor
        ensure
          running.delete(child)
          finished.signal
        end
      end

      # Lets running jobs finish for up to shutdown_timeout, then stops the rest; the
      # processor gives each stopped job back to the front of its queue.
      def drain(task, running, finished)
        deadline = Clock.now + @shutdown_timeout
        until running.empty?
          remaining = deadline - Clock.now
          break if remaining <= 0

          begin
            task.with_timeout(remaining) { finished.wait }
          rescue Async::TimeoutError
            break
          end
        end
        return if running.empty?

        FiberJob.logger.warn("shutdown_timeout reached: interrupting #{running.size} job(s); they go back to their queues")
        running.keys.each(&:stop)
      end
    end
  end
end
