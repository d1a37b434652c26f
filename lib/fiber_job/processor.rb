# frozen_string_literal: true

module FiberJob
  # Runs one taken job: resolves its class (only FiberJob::Job subclasses, never
  # anything else named by Redis data), calls `perform` with its arguments under its
  # timeout, and reports the outcome to the engine (ack, fail with retry or death,
  # reject, or give back when interrupted by shutdown). Shared by both executors.
  class Processor
    CLASS_NAME = /\A(?:::)?[A-Z]\w*(?:::[A-Z]\w*)*\z/.freeze
    # Backtrace lines sent with a failure (the engine keeps at most this many too).
    BACKTRACE_LINES = 20

    # @param timeout [#call] (seconds, &block) → runs block, raising
    #   FiberJob::TimeoutError in the job when it runs too long (each executor's watchdog)
    def initialize(native, logger, timeout:)
      @native = native
      @logger = logger
      @timeout = timeout
      @classes = {}
    end

    # @param tuple [Array] [id, queue, class, args, jid, retry_count] from the engine
    def run(tuple)
      id, queue, class_name, args, jid, retry_count = tuple
      klass = resolve(class_name)
      unless klass
        @native._reject(id, "FiberJob::UnknownJobError",
                        "class #{class_name.inspect} is not a FiberJob::Job subclass loaded in this worker")
        return
      end
      perform(id, klass, queue, args, jid, retry_count)
    end

    private

    def perform(id, klass, queue, args, jid, retry_count)
      job = klass.new
      job.jid = jid
      job.retry_count = retry_count
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      with_timeout(job.timeout) { job.perform(*args) }
      @native._ack(id)
      log_done(klass, jid, queue, started)
    rescue StandardError => e
      failed(id, job, klass, jid, retry_count, e)
    rescue Exception # rubocop:disable Lint/RescueException
      # Shutdown, Async::Stop, Interrupt, SystemExit: the job did not finish and is
      # not at fault. It goes back to the front of its queue; the exception goes on.
      @native._requeue(id)
      raise
    end

    def with_timeout(seconds, &block)
      return yield unless seconds.is_a?(Numeric) && seconds.positive?

      begin
        @timeout.call(seconds, &block)
      rescue FiberJob::TimeoutError => e
        raise FiberJob::TimeoutError, "job ran longer than its timeout of #{seconds}s", e.backtrace
      end
    end

    def failed(id, job, klass, jid, retry_count, error)
      attempt = retry_count + 1
      max = job&.max_retries.to_i
      retry_at = (Time.now.to_f + delay(job, attempt) if job && attempt <= max)
      priority = job ? safely(false) { job.priority_retry? ? true : false } : false
      @native._fail(id, error.class.name.to_s, error.message.to_s,
                    Array(error.backtrace).first(BACKTRACE_LINES), retry_at, priority)
      what = retry_at ? "retry #{attempt}/#{max} in #{(retry_at - Time.now.to_f).round(1)}s" : "no retries left, moved to the dead set"
      @logger.warn("#{klass} jid=#{jid} failed: #{error.class}: #{error.message} (#{what})")
    end

    def delay(job, attempt)
      value = safely(nil) { job.retry_delay(attempt) }
      value.is_a?(Numeric) && value >= 0 ? value.to_f : Job.instance_method(:retry_delay).bind(job).call(attempt)
    end

    # A user hook that raises must not lose the job: fall back to the default.
    def safely(fallback)
      yield
    rescue StandardError => e
      @logger.error("job hook raised #{e.class}: #{e.message}; using the default")
      fallback
    end

    def log_done(klass, jid, queue, started)
      return unless @logger.debug?

      ms = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000).round(2)
      @logger.debug("#{klass} jid=#{jid} queue=#{queue} done in #{ms}ms")
    end

    def resolve(name)
      @classes.fetch(name) do
        klass = constant(name)
        @classes[name] = klass if klass
        klass
      end
    end

    def constant(name)
      return nil unless name.is_a?(String) && name.match?(CLASS_NAME)

      klass = Object.const_get(name)
      klass.is_a?(Class) && klass < FiberJob::Job ? klass : nil
    rescue NameError
      nil
    end
  end
end
