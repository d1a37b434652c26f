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
        Entry = Struct.new(:thread, :deadline)

        def initialize
          @mutex = Mutex.new
          @wake = ConditionVariable.new
          @entries = {}
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

        # Runs the block, raising FiberJob::TimeoutError in it after `seconds`.
        def guard(seconds)
          entry = Entry.new(Thread.current, Clock.now + seconds)
          @mutex.synchronize do
            @entries[entry] = true
            @wake.signal if @next.nil? || entry.deadline < @next
          end
          begin
            yield
          ensure
            Thread.handle_interrupt(FiberJob::TimeoutError => :never) do
              @mutex.synchronize { @entries.delete(entry) }
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
                e.thread.raise(FiberJob::TimeoutError, "execution expired")
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
