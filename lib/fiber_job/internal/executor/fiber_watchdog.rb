# frozen_string_literal: true

require_relative "clock"

require "async/notification"

module FiberJob
  module Internal
    module Executor
      # Job timeouts for the fiber executor: one watchdog fiber sleeps until the earliest
      # deadline of the running jobs and stops each job that passed its deadline; the
      # job's `guard` turns that stop into FiberJob::TimeoutError, a failure like any
      # other. One timer for all jobs instead of one per job (a per-job timer costs more
      # than a no-op job itself).
      #
      # Like any fiber interruption, it lands where the job next waits (I/O, sleep).
      class FiberWatchdog
        def initialize
          # Keyed by Task: by identity, which costs no #hash call per job.
          @deadlines = {}.compare_by_identity
          @timed_out = {}.compare_by_identity
          @stopped = {}.compare_by_identity
          @wake = Async::Notification.new
          @next = nil
        end

        # Runs the block, raising FiberJob::TimeoutError in it after `seconds`.
        def guard(seconds)
          task = Async::Task.current
          @timed_out.delete(task)
          deadline = Clock.now + seconds
          @deadlines[task] = deadline
          # Woken once: while jobs follow each other without yielding, the watchdog has
          # not run to take the last signal, and it reads every deadline when it does.
          if @next.nil? || deadline < @next
            @next = deadline
            @wake.signal
          end
          yield
        rescue Async::Stop
          # Only this run's own deadline makes a timeout. A stop the watchdog sent to an
          # earlier run that async delivered late, or the worker's shutdown, goes on as
          # an interruption: the job goes back to its queue.
          raise unless @timed_out.delete(task) && Clock.now >= deadline

          raise FiberJob::TimeoutError, "execution expired"
        ensure
          @deadlines.delete(task)
        end

        # True once for a task the watchdog stopped: its owner should not reuse it.
        def retire?(task)
          @stopped.delete(task) ? true : false
        end

        # The watchdog loop; run it in its own task, stop that task to end it.
        def run(task)
          loop do
            @next = @deadlines.values.min
            if @next.nil?
              @wake.wait
              next
            end
            wait = @next - Clock.now
            if wait.positive?
              sleep_until_woken(task, wait)
            else
              expire
            end
          end
        end

        private

        def sleep_until_woken(task, seconds)
          task.with_timeout(seconds) { @wake.wait }
        rescue Async::TimeoutError
          nil
        end

        def expire
          t = Clock.now
          overdue = @deadlines.select { |_, deadline| deadline <= t }.keys
          overdue.each do |job_task|
            # Stopping one task may run it at once (async 2), and it may wait on I/O,
            # letting the others run: one that finished (or started its next job)
            # meanwhile is not stopped.
            deadline = @deadlines[job_task]
            next unless deadline && deadline <= t

            @deadlines.delete(job_task)
            @timed_out[job_task] = true
            @stopped[job_task] = true
            job_task.stop
          end
        end
      end
    end
  end
end
