# frozen_string_literal: true

module FiberJob
  # Runs one taken job: resolves its class (only FiberJob::Job subclasses, never
  # anything else named by Redis data), calls `perform` with its arguments under its
  # timeout and through the server middleware, and reports the outcome to the engine
  # (ack, fail with retry or death, reject, or give back when interrupted by shutdown).
  # Logs a line per start/done/fail and emits :perform, :retry and :dead events.
  # Shared by both executors.
  class Processor
    CLASS_NAME = /\A(?:::)?[A-Z]\w*(?:::[A-Z]\w*)*\z/.freeze
    # Backtrace lines sent with a failure (the engine keeps at most this many too).
    BACKTRACE_LINES = 20

    # Jobs running now in this process: carrier (Fiber or Thread) → [context Hash,
    # monotonic start]. Read by the TTIN dump. @api private
    RUNNING = {}.compare_by_identity

    # @param timeout [#call] (seconds, &block) → runs block, raising
    #   FiberJob::TimeoutError in the job when it runs too long (each executor's watchdog)
    # @param carrier [Symbol] :fiber or :thread: what a running job is, for backtraces
    def initialize(native, logger, timeout:, carrier: :fiber)
      @native = native
      @logger = logger
      @timeout = timeout
      @carrier = carrier
      @classes = {}
      config = FiberJob.config
      @middleware = config.server_middleware
      @job_level = config.job_log_level && Logger.const_get(config.job_log_level.to_s.upcase)
      # A logger without our formatter does not print the job context: name the job
      # in the message itself.
      @tag = !(logger.respond_to?(:formatter) && logger.formatter.is_a?(Logging::TextFormatter))
    end

    # @param tuple [Array] [id, queue, class, args, jid, retry_count] from the engine
    def run(tuple)
      id, queue, class_name, args, jid, retry_count = tuple
      klass = resolve(class_name)
      unless klass
        reason = "class #{class_name.inspect} is not a FiberJob::Job subclass loaded in this worker"
        @native._reject(id, "FiberJob::UnknownJobError", reason)
        @logger.error("jid=#{jid} queue=#{queue} moved to the dead set: #{reason}")
        if Instrumentation.listening?(:dead)
          Instrumentation.emit(:dead, job_class: class_name, jid: jid, queue: queue, args: args,
                                      error: UnknownJobError.new(reason))
        end
        return
      end
      perform(id, klass, queue, args, jid, retry_count)
    end

    private

    def perform(id, klass, queue, args, jid, retry_count)
      carrier = @carrier == :thread ? Thread.current : Fiber.current
      ctx = { "class" => klass.name, "jid" => jid, "queue" => queue }
      Thread.current[Logging::CONTEXT] = ctx
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      RUNNING[carrier] = [ctx, started]
      log_job(ctx, "start") if logging?
      job = klass.new
      job.jid = jid
      job.retry_count = retry_count
      with_timeout(job.timeout) { call_perform(job, id, queue, args) }
      @native._ack(id)
      finished(ctx, klass, jid, queue, args, started, nil)
    rescue StandardError => e
      failed(id, job, klass, jid, queue, args, retry_count, e, started)
    rescue Exception # rubocop:disable Lint/RescueException
      # Shutdown, Async::Stop, Interrupt, SystemExit: the job did not finish and is
      # not at fault. It goes back to the front of its queue; the exception goes on.
      @native._requeue(id)
      raise
    ensure
      RUNNING.delete(carrier)
      Thread.current[Logging::CONTEXT] = nil
    end

    def call_perform(job, id, queue, args)
      return job.perform(*args) if @middleware.empty?

      raw = @native._payload(id)
      payload = raw ? JSON.parse(raw) : { "class" => job.class.name, "args" => args, "jid" => job.jid }
      @middleware.invoke(job, payload, queue) { job.perform(*args) }
    end

    def with_timeout(seconds, &block)
      return yield unless seconds.is_a?(Numeric) && seconds.positive?

      begin
        @timeout.call(seconds, &block)
      rescue FiberJob::TimeoutError => e
        raise FiberJob::TimeoutError, "job ran longer than its timeout of #{seconds}s", e.backtrace
      end
    end

    def finished(ctx, klass, jid, queue, args, started, error)
      log = logging? && error.nil?
      listening = Instrumentation.listening?(:perform)
      return unless log || listening || error

      duration = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      if log
        ctx["elapsed"] = duration.round(4)
        log_job(ctx, "done: #{format("%.4f", duration)} sec")
      end
      return duration unless listening

      Instrumentation.emit(:perform, job_class: klass, jid: jid, queue: queue, args: args,
                                     duration: duration, error: error)
      duration
    end

    def failed(id, job, klass, jid, queue, args, retry_count, error, started)
      attempt = retry_count + 1
      max = job&.max_retries.to_i
      retry_at = (Time.now.to_f + delay(job, attempt) if job && attempt <= max)
      priority = job ? safely(false) { job.priority_retry? ? true : false } : false
      @native._fail(id, error.class.name.to_s, error.message.to_s,
                    Array(error.backtrace).first(BACKTRACE_LINES), retry_at, priority)
      what = retry_at ? "retry #{attempt}/#{max} in #{(retry_at - Time.now.to_f).round(1)}s" : "no retries left, moved to the dead set"
      ctx = Logging.context || {}
      duration = finished(ctx, klass, jid, queue, args, started, error)
      ctx["elapsed"] = duration.round(4)
      @logger.warn("#{@tag ? "#{klass} jid=#{jid} " : ""}fail: #{format("%.4f", duration)} sec: " \
                   "#{error.class}: #{error.message} (#{what})")
      event = retry_at ? :retry : :dead
      return unless Instrumentation.listening?(event)

      Instrumentation.emit(event, job_class: klass, jid: jid, queue: queue, args: args,
                                  error: error, retry_at: retry_at)
    end

    def logging?
      @job_level && @logger.level <= @job_level
    end

    def log_job(ctx, message)
      @logger.add(@job_level, @tag ? "#{ctx["class"]} jid=#{ctx["jid"]} #{message}" : message)
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
