# frozen_string_literal: true

module FiberJob
  module Internal
    # Runs one taken job: resolves its class (only FiberJob::Job subclasses, never
    # anything else named by Redis data), calls `perform` with its arguments under its
    # timeout and through the server middleware, and reports the outcome to the engine
    # (ack, fail with retry or death, reject, or give back when interrupted by shutdown).
    # Logs a line per start/done/fail and emits :perform, :retry and :dead events.
    # Shared by both executors.
    #
    # Every exception a job raises is that job's failure — also ScriptError (LoadError,
    # NotImplementedError), SystemStackError, NoMemoryError and SystemExit (a job that
    # calls `exit` fails, is retried and ends in the dead set like any other, and its
    # worker goes on: as in Sidekiq, a job cannot stop its worker) — except the ones that
    # say the job was interrupted, not at fault (see `interruption?`): then it goes back
    # to its queue and the exception goes on to the executor. Whatever happens, the job
    # is reported to the engine exactly once, so its slot is never lost.
    class Processor
      CLASS_NAME = /\A(?:::)?[A-Z]\w*(?:::[A-Z]\w*)*\z/.freeze
      # Backtrace lines sent with a failure: as many as the engine keeps.
      BACKTRACE_LINES = Native::BACKTRACE_LINES
      # Retries of a job whose class this worker does not have (a rolling deploy: newer
      # code enqueued it, an older worker took it). With the default backoff the last
      # one comes about 2.5 hours after the first try, longer than a deploy takes; a
      # worker that knows the class runs it at its next try.
      UNKNOWN_CLASS_RETRIES = 8
      # Job classes kept by the identity of their name String: the engine hands every
      # job of a class the same frozen String (for its first 256 classes), so the
      # class is found without hashing its name. Names it did not share fill the table
      # up to this size at most; past it, classes are found by name alone.
      SHARED_NAMES = 512
      # Seconds the worker trusts its last answer from ActiveSupport's notifier on
      # whether anyone listens for :perform (`performs_listened?`).
      NOTIFIER_RECHECK = 1.0

      # The job class a payload names, looked up safely — only a FiberJob::Job subclass,
      # by a constant-name pattern and `const_get`, never anything else Redis data names.
      # Returns [Class], [:invalid] (not a constant name), [:not_a_job], or [:unknown,
      # error] (no such constant in this process, or loading it failed). The one lookup:
      # workers and FiberJob::Testing use it.
      def self.job_class(name)
        return [:invalid] unless name.is_a?(String) && name.match?(CLASS_NAME)

        klass = Object.const_get(name)
        [klass.is_a?(Class) && (klass < FiberJob::Job || sidekiq_job?(klass)) ? klass : :not_a_job]
      rescue NameError, ScriptError => e
        # ScriptError: an autoloader found the file and it failed to load.
        [:unknown, e]
      end

      # A Sidekiq job class under `require "fiber_job/sidekiq"`.
      def self.sidekiq_job?(klass)
        defined?(FiberJob::SidekiqJob) ? klass < FiberJob::SidekiqJob : false
      end

      # True for an exception that means the job was interrupted rather than failed:
      # the worker is stopping (FiberJob::Shutdown, Async::Stop), or a signal.
      def self.interruption?(error)
        error.is_a?(SignalException) || (defined?(::Async::Stop) ? error.is_a?(::Async::Stop) : false)
      end

      # What one carrier (a worker fiber or thread) is running, made once per carrier
      # and reused for each of its jobs, so a job costs no context Hash and no registry
      # writes: the job and its class, its monotonic start, its deadline (read by the
      # watchdogs) and, once it ended, its run time. `Thread.current[Logging::CONTEXT]`
      # (fiber-local) holds the carrier's slot for its whole life; `Logging.context`
      # builds the Hash a log line prints from it while a job runs. `task` is the
      # carrier's Async::Task (fibers) or Thread (threads), which the watchdog stops or
      # raises into; `stopped` is the fiber watchdog's mark on a carrier whose job it
      # stopped for its timeout (that worker fiber then retires).
      Slot = Struct.new(:carrier, :task, :job, :klass, :started, :elapsed, :deadline, :stopped) do
        # The log context of the running job: class, jid and queue, then elapsed; nil
        # between jobs.
        def context
          job = self.job or return
          ctx = { "class" => klass ? klass.name : job.class_name, "jid" => job.jid, "queue" => job.queue }
          ctx["elapsed"] = elapsed.round(4) if elapsed
          ctx
        end
      end

      # Every carrier's slot in this process (read by the TTIN dump).
      SLOTS = {}.compare_by_identity

      # The slot of the calling fiber or thread, made and registered on first use. Each
      # executor calls it once per carrier, from the carrier, and `leave`s at its end.
      def self.enter(task = Thread.current, carrier = Fiber.current)
        slot = Thread.current[Logging::CONTEXT]
        return slot if slot

        slot = Slot.new(carrier, task)
        SLOTS[slot] = true
        Thread.current[Logging::CONTEXT] = slot
      end

      def self.leave(slot)
        SLOTS.delete(slot)
        Thread.current[Logging::CONTEXT] = nil if Thread.current[Logging::CONTEXT].equal?(slot)
      end

      # Jobs running now: [[carrier, context Hash, monotonic start], …].
      def self.running
        SLOTS.keys.filter_map { |s| (ctx = s.context) && [s.carrier, ctx, s.started] }
      end

      # @param timeout [#guard] the executor's watchdog: `guard(slot, deadline) { … }`
      #   runs the block, raising FiberJob::TimeoutError in the job past its deadline
      #   (monotonic seconds)
      def initialize(logger, timeout:)
        @logger = logger
        @timeout = timeout
        @classes = {}
        @by_name_object = {}.compare_by_identity
        @last = [].freeze
        config = FiberJob.config
        @middleware = config.server_middleware
        @middleware_list = @middleware.list
        @performs = Instrumentation.channel(:perform)
        @notified = false
        @notified_until = -Float::INFINITY
        @job_level = config.job_log_level && Logger.const_get(config.job_log_level.to_s.upcase)
        # A logger without our formatter does not print the job context: name the job
        # in the message itself.
        @tag = !(logger.respond_to?(:formatter) && logger.formatter.is_a?(Logging::TextFormatter))
      end

      # @param job [Native::TakenJob] from the engine; ended here exactly once
      # @param slot [Slot] the calling carrier's (`Processor.enter`)
      def run(job, slot = Processor.enter)
        reported = false
        name = job.class_name
        # [name, class] of the last job, one object (threads share it). String#== is
        # an identity check first, then a compare: no method call either way.
        last = @last
        klass = name == last[0] ? last[1] : known(name)
        if klass
          perform(job, klass, slot)
        else
          resolve_and_run(job, slot)
        end
        reported = true
      ensure
        # Only when something above raised before the job was reported (a bug, or an
        # interruption): it goes back to its queue. A no-op for a job already reported.
        job.give_back unless reported
      end

      private

      # A class found by its name, kept by its name String too (`SHARED_NAMES`), and
      # remembered as the last one run (`run` finds a run of jobs of one class by
      # identity alone).
      def known(name)
        klass = @by_name_object[name]
        unless klass
          klass = @classes[name] or return
          @by_name_object[name] = klass if @by_name_object.size < SHARED_NAMES
        end
        @last = [name, klass].freeze
        klass
      end

      # The first job of a class name: resolve it (caching a job class), then run, retry
      # or bury the job.
      def resolve_and_run(job, slot)
        found, missing = constant(job.class_name)
        case found
        when Class
          @classes[job.class_name] = found
          perform(job, found, slot)
        when :unknown then unknown(job, missing)
        else reject(job, found)
        end
      end

      # A class name that is no constant, or a constant that is not a job: to the dead set.
      def reject(job, why)
        reason = if why == :invalid
                   "class name #{job.class_name.inspect} is not a Ruby constant name"
                 else
                   "class #{job.class_name.inspect} is not a FiberJob::Job subclass"
                 end
        job.bury("FiberJob::UnknownJobError", reason)
        @logger.error("jid=#{job.jid} queue=#{job.queue} moved to the dead set: #{reason}")
        return unless Instrumentation.listening?(:dead)

        Instrumentation.emit(:dead, job_class: job.class_name, jid: job.jid, queue: job.queue, args: job.args,
                                    error: UnknownJobError.new(reason))
      end

      # A class this worker does not have (yet): a failure retried with backoff, so a
      # worker with newer code runs it (Sidekiq retries a NameError too).
      def unknown(job, missing)
        attempt = job.retry_count + 1
        retry_at = (Time.now.to_f + Job.new.retry_delay(attempt) if attempt <= UNKNOWN_CLASS_RETRIES)
        reason = "class #{job.class_name.inspect} is not defined in this worker (#{missing.class}: #{missing.message}); " \
                 "retried with backoff, so a worker running newer code (a rolling deploy) can run it"
        job.fail(error_class: "FiberJob::UnknownJobError", message: reason, backtrace: [], retry_at: retry_at, priority: false)
        what = retry_at ? "retry #{attempt}/#{UNKNOWN_CLASS_RETRIES} in #{(retry_at - Time.now.to_f).round(1)}s" : "no retries left, moved to the dead set"
        @logger.warn("jid=#{job.jid} queue=#{job.queue} #{reason} (#{what})")
        event = retry_at ? :retry : :dead
        return unless Instrumentation.listening?(event)

        Instrumentation.emit(event, job_class: job.class_name, jid: job.jid, queue: job.queue, args: job.args,
                                    error: UnknownJobError.new(reason), retry_at: retry_at)
      end

      def perform(job, klass, slot)
        started = Native.monotonic
        slot.klass = klass
        slot.started = started
        slot.elapsed = nil
        slot.job = job
        log = @job_level && @logger.level <= @job_level # logging?, inlined: read once per job
        log_job(slot, "start") if log
        instance = klass.new
        instance.jid = job.jid
        instance.retry_count = job.retry_count
        seconds = instance.timeout
        if seconds.is_a?(Numeric) && seconds > 0
          timed = true
          # call_perform's common case inlined: a method call is a tenth of a no-op job.
          @timeout.guard(slot, started + seconds) do
            @middleware_list.empty? && !job.throttled ? instance.perform(*job.args) : call_perform(instance, job)
          end
        else
          call_perform(instance, job)
        end
        job.ack
        # performs_listened?, inlined
        listening = !@performs.subscribers.empty? ||
                    (started < @notified_until ? @notified : notifier_listening(started))
        finished(slot, klass, job, started, nil, log, listening) if log || listening
      rescue Exception => e # rubocop:disable Lint/RescueException
        return requeue(job, slot, e) if e.is_a?(Requeue)

        if self.class.interruption?(e)
          # The job did not finish and is not at fault: back to the front of its queue;
          # the exception goes on to the executor.
          job.give_back
          raise
        end
        e = overran(e, seconds) if timed && e.is_a?(FiberJob::TimeoutError)
        failed(job, instance, klass, e, started, slot)
      ensure
        slot.job = nil
      end

      # A job that stopped early to run again (FiberJob::Requeue): back to its queue.
      def requeue(job, slot, error)
        error.front? ? job.give_back : job.requeue
        log_job(slot, "requeued to the #{error.front? ? "front" : "back"} of its queue: #{error.message}") if logging?
      end

      # A throttled job's start is logged right before its perform (`begin`), not when
      # the engine handed it over: a job taken behind one that holds the CPU counts
      # from when it really starts.
      def call_perform(instance, job)
        if @middleware_list.empty?
          job.begin if job.throttled
          return instance.perform(*job.args)
        end

        raw = job.payload
        payload = raw ? JSON.parse(raw) : { "class" => instance.class.name, "args" => job.args, "jid" => job.jid }
        @middleware.invoke(instance, payload, job.queue) do
          job.begin if job.throttled
          instance.perform(*job.args)
        end
      end

      # The watchdog's FiberJob::TimeoutError, saying which timeout the job ran past.
      def overran(error, seconds)
        FiberJob::TimeoutError.new("job ran longer than its timeout of #{seconds}s").tap { |e| e.set_backtrace(error.backtrace) }
      end

      # Whether a :perform event is wanted: `FiberJob.on` subscribers exactly (an Array
      # check); ActiveSupport's notifier, whose answer costs more than a no-op job, at
      # most once a `NOTIFIER_RECHECK`, by the jobs' start times — an ActiveSupport
      # subscriber added while the worker runs gets the events of the jobs that start a
      # second or more after it subscribed.
      def performs_listened?(now)
        !@performs.subscribers.empty? || (now < @notified_until ? @notified : notifier_listening(now))
      end

      # The answer is stored before its expiry, so a thread that reads the new expiry
      # (thread executor: threads share the processor) reads the new answer too.
      def notifier_listening(now)
        notified = @performs.notified?
        @notified = notified
        @notified_until = now + NOTIFIER_RECHECK
        notified
      end

      # `log`: whether this job's lines are logged (`logging?`, read once per job);
      # `listening`: whether a :perform event is wanted (`performs_listened?`).
      def finished(slot, klass, job, started, error, log = logging?, listening = performs_listened?(started))
        log &&= error.nil?
        return unless log || listening || error

        duration = Native.monotonic - started
        if log
          slot.elapsed = duration
          log_job(slot, "done: #{format("%.4f", duration)} sec")
        end
        return duration unless listening

        Instrumentation.emit(:perform, job_class: klass, jid: job.jid, queue: job.queue, args: job.args,
                                       duration: duration, error: error)
        duration
      end

      # `instance` is nil when `klass.new` raised.
      def failed(job, instance, klass, error, started, slot)
        attempt = job.retry_count + 1
        max = instance ? safely(0) { instance.max_retries.to_i } : 0
        wait = delay(instance, attempt, error) if instance && attempt <= max
        retry_at = (Time.now.to_f + wait if wait)
        priority = instance ? safely(false) { instance.priority_retry? ? true : false } : false
        error_class, message, backtrace = describe(error)
        exhausted(job, instance, error) if retry_at.nil? && instance.respond_to?(:sidekiq_retries_exhausted)
        job.fail(error_class: error_class, message: message, backtrace: backtrace, retry_at: retry_at, priority: priority)
        what = retry_at ? "retry #{attempt}/#{max} in #{(retry_at - Time.now.to_f).round(1)}s" : "no retries left, moved to the dead set"
        duration = finished(slot, klass, job, started, error)
        slot.elapsed = duration
        @logger.warn("#{@tag ? "#{klass} jid=#{job.jid} " : ""}fail: #{format("%.4f", duration)} sec: " \
                     "#{error_class}: #{message} (#{what})")
        event = retry_at ? :retry : :dead
        return unless Instrumentation.listening?(event)

        Instrumentation.emit(event, job_class: klass, jid: job.jid, queue: job.queue, args: job.args,
                                    error: error, retry_at: retry_at)
      end

      # Class name, message and backtrace of an exception, even one whose #message
      # raises or that is not a String (a job's exception is user code).
      def describe(error)
        message = safely("(#{error.class}#message raised)") { error.message.to_s }
        trace = safely([]) { Array(error.backtrace).first(BACKTRACE_LINES).map(&:to_s) }
        [error.class.name.to_s, message, trace]
      end

      def logging?
        @job_level && @logger.level <= @job_level
      end

      def log_job(slot, message)
        @logger.add(@job_level, @tag ? "#{slot.klass} jid=#{slot.job.jid} #{message}" : message)
      end

      # Seconds before the retry, or nil: no retry (a Sidekiq job's `sidekiq_retry_in`
      # said :kill or :discard).
      def delay(instance, attempt, error)
        if instance.respond_to?(:sidekiq_retry_delay)
          value = safely(:default) { instance.sidekiq_retry_delay(attempt, error) }
          return value.nil? ? nil : [value == :default ? instance.retry_delay(attempt) : value.to_f, 0.0].max
        end
        value = safely(nil) { instance.retry_delay(attempt) }
        value.is_a?(Numeric) && value >= 0 ? value.to_f : Job.instance_method(:retry_delay).bind(instance).call(attempt)
      end

      # A Sidekiq job's `sidekiq_retries_exhausted` block, with the payload, before it
      # goes to the dead set.
      def exhausted(job, instance, error)
        raw = job.payload
        payload = raw ? JSON.parse(raw) : {}
        safely(nil) { instance.sidekiq_retries_exhausted(payload, error) }
      end

      # A user hook that raises must not lose the job: fall back to the default.
      def safely(fallback)
        yield
      rescue Exception => e # rubocop:disable Lint/RescueException
        raise if self.class.interruption?(e)

        @logger.error("job hook raised #{e.class}: #{e.message}; using the default")
        fallback
      end

      def constant(name)
        self.class.job_class(name)
      end
    end
  end
end
