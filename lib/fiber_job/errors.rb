# frozen_string_literal: true

# Every error FiberJob raises. The Rust extension looks these classes up by name
# (src/ruby/error.rs), so this file is loaded before it.
module FiberJob
  # Base class: `rescue FiberJob::Error` catches everything FiberJob raises on purpose.
  class Error < StandardError; end

  # A configuration value is unusable; the message names the option.
  class ConfigurationError < Error; end

  # Redis could not be reached within `network_timeout`, or could not take writes
  # (loading, failing over, a read-only replica); the message says which.
  class ConnectionError < Error; end

  # Redis is over its `maxmemory` and refused a write: the job was not stored. Free
  # memory in Redis or raise maxmemory, then enqueue again.
  class RedisFullError < Error; end

  # A cron expression does not parse; the message holds the expression and the reason.
  class InvalidCronError < Error; end

  # A job ran past its `@timeout`; handled like any failure (retried).
  class TimeoutError < Error; end

  # A payload names a class that is not a FiberJob job.
  class UnknownJobError < Error; end

  # Raised by a job that stops early on purpose and wants to run again later (an
  # IterableJob at a worker's stop, or past its `max_iteration_runtime`, after saving its
  # cursor): it goes back to its queue — to the front when `front?`, else the back —
  # and the worker goes on. Not a StandardError, so `rescue => e` does not swallow it.
  class Requeue < Exception # rubocop:disable Lint/InheritException
    def initialize(message = nil, front: true)
      super(message)
      @front = front
    end

    def front? = @front
  end

  # Raised into a job the worker interrupts at the end of `shutdown_timeout`; the job
  # goes back to its queue. Not a StandardError, so `rescue => e` does not swallow it.
  class Shutdown < Interrupt; end
end
