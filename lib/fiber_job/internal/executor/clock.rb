# frozen_string_literal: true

module FiberJob
  module Internal
    module Executor
      # Monotonic seconds, for deadlines (never wall-clock time, which can jump):
      # Process::CLOCK_MONOTONIC's, read by the engine for a third of
      # Process.clock_gettime's cost.
      module Clock
        module_function

        def now
          Native.monotonic
        end
      end
    end
  end
end
