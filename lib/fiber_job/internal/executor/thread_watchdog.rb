# frozen_string_literal: true

require_relative "clock"

module FiberJob
  module Internal
    module Executor
      # Job timeouts for the thread executor: one watchdog thread sleeps until the earliest
      # deadline and raises FiberJob::TimeoutError into each job thread past its deadline.
      # (Ruby 3.1's Timeout.timeout starts a thread per call, which cost a tenth of the
      # throughput of jobs that sleep 10 ms.)
      #
      # A raise can race with the job finishing: the guard's cleanup runs with
      # TimeoutError deferred, so a raise that arrives then is delivered as the guard
      # ends — still inside it, where the processor treats it as the job's timeout —
      # never later in the worker's own code.
      class ThreadWatchdog
        def initialize
          @mutex = Mutex.new
          @wake = ConditionVariable.new
          # Slots (Processor::Slot) of the jobs under a deadline, by identity.
          @entries = {}.compare_by_identity
          @next = nil
          @stopping = false
        end

        def start
          @thread = Thread.new { run }
          @thread.name = "fiber_job-timeouts"
          self
        end

        def stop
          @mutex.synchronize do
            @stopping = true
            @wake.signal
          end
          @thread&.join(2)
        end

        # Runs the block, raising FiberJob::TimeoutError in it at `deadline` (monotonic
        # seconds). `slot.task` is the job's Thread.
        def guard(slot, deadline)
          @mutex.synchronize do
            slot.deadline = deadline
            @entries[slot] = true
            @wake.signal if @next.nil? || deadline < @next
          end
          begin
            yield
          ensure
            Thread.handle_interrupt(FiberJob::TimeoutError => :never) do
              @mutex.synchronize do
                @entries.delete(slot)
                slot.deadline = nil
              end
            end
          end
        end

        private

        def run
          @mutex.synchronize do
            until @stopping
              now = Clock.now
              overdue, waiting = @entries.keys.partition { |e| e.deadline <= now }
              overdue.each do |e|
                @entries.delete(e)
                e.task.raise(FiberJob::TimeoutError, "execution expired")
              end
              @next = waiting.map(&:deadline).min
              @wake.wait(@mutex, @next && [@next - Clock.now, 0.001].max)
            end
          end
        end
      end
    end
  end
end
