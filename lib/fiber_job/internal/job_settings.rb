# frozen_string_literal: true

require "digest"

module FiberJob
  module Internal
    # What the gem reads from a job class: the settings its class macros (`expires_in`,
    # `unique_for`, `unique_by`, `limits_concurrency`, `throttle`,
    # `enqueue_after_commit`, IterableJob's `checkpoint_every`, …) store, inherited from
    # the nearest job superclass, and the ones a job's `initialize` may override, checked
    # once per class. Functions of the class rather than methods of it, so that none of
    # this is inherited by every job class an app writes. A class that is not a
    # FiberJob::Job (a Sidekiq job class under `fiber_job/sidekiq`, a class name) has
    # none of these settings.
    module JobSettings
      module_function

      # A class macro's setting: `klass`'s, else the nearest superclass's, else `fallback`.
      def inherited(klass, ivar, fallback)
        while klass.is_a?(Class)
          return klass.instance_variable_get(ivar) if klass.instance_variable_defined?(ivar)

          klass = klass.superclass
        end
        fallback
      end

      def job_class?(klass) = klass.is_a?(Class) && klass <= Job

      # [seconds, :success | :start] for unique jobs of `klass`, or nil.
      def uniqueness(klass)
        return nil unless job_class?(klass)

        once(klass, :@fiber_job_uniqueness) do
          job = klass.new
          job.unique_for && [positive_seconds!("#{klass.name} @unique_for", job.unique_for),
                             (job.unique_until || :success).to_sym]
        end
      end

      # The unique lock's name for one job of `klass`: a digest of class, queue and key.
      def unique_digest(klass, queue, args)
        by = inherited(klass, :@unique_by, nil)
        lock_digest(klass.name, queue, by ? by.call(*args) : args)
      end

      # The unique lock's name of a job of class `class_name` on `queue` with `key`
      # (Job classes and ActiveJob's fiber_job_options alike).
      def lock_digest(class_name, queue, key)
        Digest::SHA256.hexdigest(JSON.generate([class_name, queue.to_s, key]))[0, 32]
      rescue JSON::GeneratorError, TypeError => e
        raise ArgumentError, "#{class_name} unique_by returned a key that is not JSON (#{e.message})"
      end

      # Seconds `klass`'s jobs expire after (its `@expires_in` default), or nil.
      def expiry(klass)
        return nil unless job_class?(klass)

        once(klass, :@fiber_job_expiry) do
          value = klass.new.expires_in
          value && positive_seconds!("#{klass.name} @expires_in", value)
        end
      end

      # `klass`'s limits per key, checked once: { concurrency: {...}, throttle: {...} }
      # with the ones it has, or nil for none.
      def limits(klass)
        return nil unless job_class?(klass)

        once(klass, :@fiber_job_limits) do
          job = klass.new
          concurrency = job.limits_concurrency && Limits.concurrency!(klass.name, job.limits_concurrency)
          throttle = job.throttle && Limits.throttle!(klass.name, job.throttle)
          (concurrency || throttle) && { concurrency: concurrency, throttle: throttle }.compact
        end
      end

      # The payload fields of one job's limits (nil for a class without any).
      def limit_fields(klass, args)
        checked = limits(klass)
        checked && Limits.fields(klass, checked, args)
      end

      # true or false when `klass` says whether its enqueues wait for a commit; nil when
      # it leaves that to `config.enqueue_after_commit`.
      def enqueue_after_commit?(klass)
        job_class?(klass) ? inherited(klass, :@enqueue_after_commit, nil) : nil
      end

      # Fields every tick of the CronJob class `klass` carries: its limits per key (the
      # key lambdas get no arguments) and its `expires_in`, which the engine counts from
      # the tick. (Each tick runs once across processes; `unique_for` adds nothing.)
      def cron_tick_fields(klass)
        seconds = expiry(klass)
        (limit_fields(klass, []) || {}).merge(seconds ? { "expires_in" => seconds } : {})
      end

      def positive_seconds!(what, value)
        seconds = value.is_a?(Numeric) || (value.respond_to?(:to_f) && !value.is_a?(String)) ? value.to_f : nil
        unless seconds&.positive? && seconds.finite?
          raise ArgumentError, "#{what} takes a positive number of seconds (or a Duration), got #{value.inspect}"
        end

        seconds
      end

      # A value computed once per class and kept on it.
      def once(klass, ivar)
        return klass.instance_variable_get(ivar) if klass.instance_variable_defined?(ivar)

        klass.instance_variable_set(ivar, yield)
      end
    end
  end
end
