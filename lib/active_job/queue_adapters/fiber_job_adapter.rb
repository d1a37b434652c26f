# frozen_string_literal: true

# Where ActiveJob's autoloading looks for `queue_adapter = :fiber_job`.
require "fiber_job/active_job"
