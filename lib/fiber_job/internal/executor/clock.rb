# frozen_string_literal: true

module FiberJob
  module Internal
    module Executor
      # Monotonic seconds, for deadlines (never wall-clock time, which can jump).
      module Clock
        module_function

        def now
          Process.clock_gettime(Process::CLOCK_MONOTONIC)
        end
      end
    end
  end
end
