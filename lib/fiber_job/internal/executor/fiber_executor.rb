# frozen_string_literal: true

require_relative "clock"

require "async"
require "async/condition"
require "async/notification"
require "io/wait"
require_relative "fiber_watchdog"
require_relative "fine_selector"

module FiberJob
  module Internal
    module Executor
      # Runs jobs as fibers under the async gem's reactor, one fiber per running job, so
      # I/O-bound jobs (sleep, sockets, HTTP) interleave on one thread. The engine hands
      # out at most each queue's concurrency, so the number of running jobs is exact.
      # Worker fibers are pooled: one that finishes a job takes the next itself if the
      # engine has one, else waits, and the dispatcher hands a job to an idle one with a
      # direct resume (Condition#signal).
      #
      # The dispatcher fiber never blocks its thread: when the engine has nothing to hand
      # out, it waits on the engine's wake socket (an IO the scheduler understands).
      #
      # An exception that escapes the processor (a signal's, or a bug) stops the
      # worker gracefully — every other job finishes or goes back to its queue — and is
      # raised again from #run, so the process ends non-zero instead of living on unable
      # to run jobs.
      #
      # Uses only what async 1.30 and 2.x share: Kernel#Async, Task#async, Task#stop,
      # Task.current, Task#with_timeout, Async::Condition, Async::Notification,
      # Async::TimeoutError; and under 1.x its reactor with FineSelector (on-time timers).
      # Where they differ, nothing depends on it: a Task#stop may run the stopped fiber at
      # once (2.x) or later (1.x, and 2.x when it cannot at once), and a Condition's
      # signal may resume at once or be queued (see Idle).
      class FiberExecutor
        # Jobs taken per call into the engine: one call hands out a batch.
        BATCH = 256

        # A worker fiber waiting for a job: the dispatcher puts the job in `job`, then
        # signals `condition`. The job travels in the struct, not in the signal: async
        # 1.x's Condition#signal resumes the waiter at once and drops a value nobody waits
        # for, async 2.x's queues it for the next wait, so neither may carry a job that a
        # worker could miss. A worker that ends gives back what it was handed.
        Idle = Struct.new(:condition, :job)

        # Job timeouts go through one FiberWatchdog, not Timeout.timeout, which would
        # raise in whatever fiber runs when its thread fires (async 1.30's scheduler does
        # not implement timeout_after), nor a timer per job.
        attr_reader :watchdog

        # @param processor_for [#call] builds the Processor, given the job timeout hook
        def initialize(native, shutdown_timeout, &processor_for)
          @native = native
          @watchdog = FiberWatchdog.new
          @processor = processor_for.call(@watchdog)
          @shutdown_timeout = shutdown_timeout
          # Every worker task → its Processor::Slot (whose `job` is the one it runs).
          @workers = {}.compare_by_identity
          @idle = []                     # conditions of workers waiting for a job
          # Signalled when a job ends while draining (`drain`); a Notification resumes the
          # waiter from the reactor, never nested inside the worker that signals.
          @finished = Async::Notification.new
          @draining = false
        end

        def run
          wake = IO.for_fd(@native._wake_fd, autoclose: false)
          in_reactor do |task|
            watchdog = task.async { |t| @watchdog.run(t) }
            pulse = task.async { |t| pulse(t) } if FiberJob.config.health_port
            dispatch(task, wake)
            drain(task)
            watchdog.stop
            pulse&.stop
          end
          raise @fatal if @fatal
        ensure
          wake&.close
        end

        private

        # Tells the engine every second that the reactor runs (health checks' /live):
        # a job that blocks the reactor stops it.
        def pulse(task)
          loop do
            @native._pulse
            task.with_timeout(1) { Async::Condition.new.wait }
          rescue Async::TimeoutError
            next
          end
        end

        def in_reactor(&block)
          reactor = Async::Task.current? ? nil : FineSelector.reactor
          return Async(&block) unless reactor

          begin
            reactor.run(&block)
          ensure
            reactor.close
          end
        end

        def dispatch(task, wake)
          loop do
            jobs = @native._take(BATCH)
            if jobs.empty?
              break if @native._stopping?

              wake.wait_readable
              wake.read_nonblock(4096, exception: false)
              next
            end
            jobs.each { |job| hand(task, job) }
          end
        end

        # Gives a job to an idle worker fiber, or starts one. Workers live on: a fiber and
        # a Task per job would cost more than a no-op job itself. There are never more
        # workers than jobs that ran at once (the engine's limits bound that).
        def hand(task, job)
          if (idle = @idle.pop)
            idle.job = job
            idle.condition.signal
          else
            spawn_worker(task, job)
          end
        end

        def spawn_worker(task, first)
          idle = Idle.new(Async::Condition.new, nil)
          task.async do |me|
            slot = Processor.enter(me)
            @workers[me] = slot
            @watchdog.watch(slot)
            work(slot, first, idle)
          rescue Async::Stop
            nil # its job, if any, was given back to the queue by the processor
          rescue Exception => e # rubocop:disable Lint/RescueException
            fatal(e)
          ensure
            @workers.delete(me)
            if slot
              @watchdog.unwatch(slot)
              Processor.leave(slot)
            end
            @idle.delete(idle)
            # Handed a job it did not start (it was stopped while idle): to its queue.
            idle.job&.give_back
            @finished.signal if @draining
          end
        end

        def work(slot, job, idle)
          while job
            @processor.run(job, slot)
            @finished.signal if @draining
            # A worker the watchdog stopped (a timed-out job) retires: a fresh one
            # replaces it on demand, so no Task carries a stop across jobs.
            break if slot.stopped

            # Straight on to the next job when the engine has one: waiting for the
            # dispatcher fiber to be woken and hand it over cost 10 ms jobs ~0.2 ms each.
            job = @native._take_one
            next if job

            @idle << idle
            idle.condition.wait until idle.job # a wake-up without a job waits again
            job = idle.job
            idle.job = nil
          end
        end

        # Records the first exception that escaped a worker fiber and stops the worker.
        def fatal(error)
          @fatal ||= error
          FiberJob.logger.error("worker stopping: #{error.class}: #{error.message} escaped a job " \
                                "(#{error.backtrace&.first}); its job went back to the queue")
          @native._stop
        end

        # Lets running jobs finish for up to shutdown_timeout, then stops the rest; the
        # processor gives each stopped job back to the front of its queue. Then every
        # worker fiber ends.
        def drain(task)
          @draining = true # from here on, workers signal `@finished` when a job ends
          deadline = Clock.now + @shutdown_timeout
          while busy.positive?
            remaining = deadline - Clock.now
            break if remaining <= 0

            begin
              task.with_timeout(remaining) { @finished.wait }
            rescue Async::TimeoutError
              break
            end
          end
          unless (running = busy).zero?
            FiberJob.logger.warn("shutdown_timeout reached: interrupting #{running} job(s); they go back to their queues")
          end
          @idle.clear
          @workers.keys.each(&:stop)
        end

        # Worker fibers running a job now.
        def busy
          @workers.each_value.count(&:job)
        end
      end
    end
  end
end
