# frozen_string_literal: true

require_relative "clock"
require_relative "thread_watchdog"

module FiberJob
  module Internal
    module Executor
      # Runs jobs on Ruby threads (config.executor = :thread), for CPU-bound jobs or code
      # that is not fiber-safe. One thread per unit of concurrency; each waits for work
      # inside the engine without the GVL, so idle threads cost nothing.
      #
      # An exception that escapes the processor (a signal's, or a bug) would end
      # its thread; instead it stops the worker gracefully and is raised again from #run,
      # so the process ends non-zero rather than staying up with threads that are gone.
      class ThreadExecutor
        # Seconds a thread waits for a job before checking for a stop again; the engine
        # also wakes waiting threads at once when the worker stops.
        WAIT = 1.0

        # @param processor_for [#call] builds the Processor, given the job timeout hook
        def initialize(native, shutdown_timeout, threads, &processor_for)
          @native = native
          @watchdog = ThreadWatchdog.new
          @processor = processor_for.call(@watchdog)
          @shutdown_timeout = shutdown_timeout
          @threads = threads
        end

        def run
          @watchdog.start
          threads = Array.new(@threads) { |i| Thread.new { work }.tap { |t| t.name = "fiber_job-#{i}" } }
          # Health checks' /live: a thread that tells the engine every second that Ruby
          # runs (a job holding the GVL stops it).
          pulse = Thread.new { loop { @native._pulse; sleep 1 } } if FiberJob.config.health_port
          nil until @native._wait_stop(WAIT)
          deadline = Clock.now + @shutdown_timeout
          threads.each { |t| t.join([deadline - Clock.now, 0].max) }
          alive = threads.select(&:alive?)
          unless alive.empty?
            FiberJob.logger.warn("shutdown_timeout reached: interrupting #{alive.size} job(s); they go back to their queues")
            alive.each { |t| t.raise(FiberJob::Shutdown, "worker is shutting down") }
            alive.each { |t| t.join(WAIT * 5) }
          end
          raise @fatal if @fatal
        ensure
          pulse&.kill
          @watchdog.stop
        end

        private

        def work
          slot = Processor.enter(Thread.current, Thread.current)
          until @native._stopping?
            job = @native._take_blocking(WAIT)
            @processor.run(job, slot) if job
          end
        rescue Exception => e # rubocop:disable Lint/RescueException
          # The forced end of a shutdown: the processor gave the job back.
          return if e.is_a?(FiberJob::Shutdown) && @native._stopping?

          @fatal ||= e
          FiberJob.logger.error("worker stopping: #{e.class}: #{e.message} escaped a job " \
                                "(#{e.backtrace&.first}); its job went back to the queue")
          @native._stop
        ensure
          Processor.leave(slot) if slot
        end
      end
    end
  end
end
