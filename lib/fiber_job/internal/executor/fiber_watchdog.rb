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
          # The slots (Processor::Slot) of every worker fiber, by identity: a running
          # job's deadline is its slot's, so starting and ending one writes no table.
          @slots = {}.compare_by_identity
          @wake = Async::Notification.new
          @next = nil
        end

        def watch(slot)
          @slots[slot] = true
        end

        def unwatch(slot)
          @slots.delete(slot)
        end

        # Runs the block, raising FiberJob::TimeoutError in it at `deadline` (monotonic
        # seconds). `slot.task` is the job's Async::Task.
        def guard(slot, deadline)
          slot.deadline = deadline
          # Woken once: while jobs follow each other without yielding, the watchdog has
          # not run to take the last signal, and it reads every deadline when it does.
          if !@next || deadline < @next
            @next = deadline
            @wake.signal
          end
          yield
        rescue Async::Stop
          # Only this run's own deadline makes a timeout. A stop the watchdog sent to an
          # earlier run that async delivered late, or the worker's shutdown, goes on as
          # an interruption: the job goes back to its queue.
          raise unless slot.stopped && Clock.now >= deadline

          raise FiberJob::TimeoutError, "execution expired"
        ensure
          slot.deadline = nil
        end

        # The watchdog loop; run it in its own task, stop that task to end it.
        def run(task)
          loop do
            @next = earliest
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

        def earliest
          @slots.each_key.filter_map(&:deadline).min
        end

        def sleep_until_woken(task, seconds)
          task.with_timeout(seconds) { @wake.wait }
        rescue Async::TimeoutError
          nil
        end

        # Stops every job past its deadline. Its worker fiber retires (`slot.stopped`):
        # a fresh one replaces it on demand, so no Task carries a stop across jobs.
        def expire
          t = Clock.now
          overdue = @slots.each_key.select { |slot| (d = slot.deadline) && d <= t }
          overdue.each do |slot|
            # Stopping one task may run it at once (async 2), and it may wait on I/O,
            # letting the others run: one that finished (or started its next job)
            # meanwhile is not stopped.
            deadline = slot.deadline
            next unless deadline && deadline <= t

            slot.deadline = nil
            slot.stopped = true
            slot.task.stop
          end
        end
      end
    end
  end
end
