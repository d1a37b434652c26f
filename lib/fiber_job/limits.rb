# frozen_string_literal: true

module FiberJob
  # Limits per key, declared on a job class (`extend`ed into FiberJob::Job): at most N
  # jobs with the same key running at once (`limits_concurrency`), at most N starts
  # per window (`throttle`). Ruby only declares them: each payload carries its key and
  # numbers, and the engine admits it in Redis (see docs/ARCHITECTURE.md, "Limits per
  # key"). Each is also settable in `initialize`, like `@queue`:
  #
  #   @limits_concurrency = { to: 2, key: ->(account_id, *) { account_id }, lease: 600 }
  #   @throttle = { limit: 100, per: 60, key: ->(user_id, *) { "stripe-#{user_id}" } }
  module Limits
    # Seconds a running job keeps its concurrency slot when its worker is lost.
    DEFAULT_LEASE = 600
    # The shortest lease: a worker renews the leases of its jobs every second.
    MIN_LEASE = 2
    # Longest key a limit may have, in bytes (it names Redis keys).
    MAX_KEY_BYTES = 1000

    # At most `to` jobs of this class with the same key run at once, across every
    # process. `key` gets the job's arguments (default: one key for the class); keys
    # are per class unless `group` names a scope several classes share. A job over
    # the limit waits in Redis, not in a worker, and starts when a slot of its key
    # frees, in order. A slot is held from the job's start until it succeeds, fails
    # or dies; its worker renews it every second, so `lease` (seconds, at least 2)
    # is how long a slot outlives a lost worker (killed with -9) at most.
    def limits_concurrency(to:, key: nil, lease: DEFAULT_LEASE, group: nil)
      @limits_concurrency = { to: to, key: key, lease: lease, group: group }
    end

    # At most `limit` jobs of this class with the same key start in any `per` seconds
    # (a sliding window). `key` and `group` as for `limits_concurrency`. Jobs over the
    # rate wait in Redis and start, in order, when the window has room.
    def throttle(limit, per:, key: nil, group: nil)
      @throttle = { limit: limit, per: per, key: key, group: group }
    end

    # The class's limits, checked once: { concurrency: {...}, throttle: {...} } with
    # the ones it has, or nil for none.
    # @api private
    def limits
      return @limits if defined?(@limits)

      job = new
      concurrency = job.limits_concurrency && Limits.concurrency!(name, job.limits_concurrency)
      throttle = job.throttle && Limits.throttle!(name, job.throttle)
      @limits = (concurrency || throttle) && { concurrency: concurrency, throttle: throttle }.compact
    end

    # The payload fields of one job's limits (nil for a class without any).
    # @api private
    def limit_fields(args)
      return nil unless limits

      Limits.fields(self, limits, args)
    end

    # @api private
    def default_limits_concurrency = inherited_setting(:@limits_concurrency, nil)

    # @api private
    def default_throttle = inherited_setting(:@throttle, nil)

    class << self
      # @api private
      def concurrency!(name, options)
        options = options!(name, "limits_concurrency", options, %i[to key lease group])
        { to: count!("#{name}.limits_concurrency to:", options[:to]),
          lease: lease!("#{name}.limits_concurrency lease:", options.fetch(:lease, DEFAULT_LEASE)),
          key: key_option!("#{name}.limits_concurrency", options[:key]), group: options[:group] }
      end

      # @api private
      def throttle!(name, options)
        options = options!(name, "throttle", options, %i[limit per key group])
        { limit: count!("#{name}.throttle limit", options[:limit]),
          per: Job.positive_seconds!("#{name}.throttle per:", options[:per]),
          key: key_option!("#{name}.throttle", options[:key]), group: options[:group] }
      end

      # The payload fields of checked `limits` ({ concurrency:, throttle: }) for one
      # job of `job_class` (a FiberJob or an ActiveJob class) with `args`:
      #   "concurrency" => { "key", "to", "lease" }, "throttle" => { "key", "limit", "per" }
      # @api private
      def fields(job_class, limits, args)
        fields = {}
        if (c = limits[:concurrency])
          fields["concurrency"] = { "key" => key_for(job_class, "limits_concurrency", c, args), "to" => c[:to],
                                    "lease" => c[:lease] }
        end
        if (t = limits[:throttle])
          fields["throttle"] = { "key" => key_for(job_class, "throttle", t, args), "limit" => t[:limit],
                                 "per" => t[:per] }
        end
        fields
      end

      # "<scope>/<key>": the scope is the class's name or the group.
      # @api private
      def key_for(job_class, what, limit, args)
        scope = (limit[:group] || job_class.name).to_s
        return scope unless limit[:key]

        value = limit[:key].call(*args)
        unless value.is_a?(String) || value.is_a?(Symbol) || value.is_a?(Integer)
          raise ArgumentError, "#{job_class.name}.#{what} key: returned #{value.inspect}; return a String, " \
                               "Symbol or Integer naming what the limit is for (e.g. an account id)"
        end
        key = "#{scope}/#{value}"
        if key.bytesize > MAX_KEY_BYTES
          raise ArgumentError, "#{job_class.name}.#{what} key: is #{key.bytesize} bytes; keep it under #{MAX_KEY_BYTES}"
        end

        key
      end

      private

      def options!(name, what, options, allowed)
        unless options.is_a?(Hash)
          raise ArgumentError, "#{name} @#{what} must be a Hash like { #{allowed.first}: … }, got #{options.inspect}"
        end

        unknown = options.keys - allowed
        unless unknown.empty?
          raise ArgumentError, "#{name}.#{what} takes #{allowed.map { |k| "#{k}:" }.join(", ")}; " \
                               "got #{unknown.inspect}"
        end
        options
      end

      # Workers renew their leases every second: a shorter one could end under a
      # running job.
      def lease!(what, value)
        seconds = Job.positive_seconds!(what, value)
        raise ArgumentError, "#{what} takes at least #{MIN_LEASE} seconds, got #{value.inspect}" if seconds < MIN_LEASE

        seconds
      end

      def count!(what, value)
        return value if value.is_a?(Integer) && value.positive?

        raise ArgumentError, "#{what} takes a positive Integer, got #{value.inspect}"
      end

      def key_option!(what, key)
        return key if key.nil? || key.respond_to?(:call)

        raise ArgumentError, "#{what} key: takes a lambda of the job's arguments, e.g. ->(account_id, *) " \
                             "{ account_id }, got #{key.inspect}"
      end
    end
  end
end
