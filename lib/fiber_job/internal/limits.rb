# frozen_string_literal: true

module FiberJob
  module Internal
    # Limits per key, declared on a job class (`Job.limits_concurrency`, `Job.throttle`,
    # or ActiveJob's `fiber_job_options`): checked here, and turned into each payload's
    # fields. Ruby only declares them: the payload carries its key and numbers, and the
    # engine admits it in Redis (see docs/ARCHITECTURE.md, "Limits per key").
    module Limits
      # Seconds a running job keeps its concurrency slot when its worker is lost.
      DEFAULT_LEASE = 600
      # The shortest lease: a worker renews the leases of its jobs every second.
      MIN_LEASE = 2
      # Longest key a limit may have, in bytes (it names Redis keys).
      MAX_KEY_BYTES = 1000

      class << self
        def concurrency!(name, options)
          options = options!(name, "limits_concurrency", options, %i[to key lease group])
          { to: count!("#{name}.limits_concurrency to:", options[:to]),
            lease: lease!("#{name}.limits_concurrency lease:", options.fetch(:lease, DEFAULT_LEASE)),
            key: key_option!("#{name}.limits_concurrency", options[:key]), group: options[:group] }
        end

        def throttle!(name, options)
          options = options!(name, "throttle", options, %i[limit per key group])
          { limit: count!("#{name}.throttle limit", options[:limit]),
            per: JobSettings.positive_seconds!("#{name}.throttle per:", options[:per]),
            key: key_option!("#{name}.throttle", options[:key]), group: options[:group] }
        end

        # The payload fields of checked `limits` ({ concurrency:, throttle: }) for one
        # job of `job_class` (a FiberJob or an ActiveJob class) with `args`:
        #   "concurrency" => { "key", "to", "lease" }, "throttle" => { "key", "limit", "per" }
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
          seconds = JobSettings.positive_seconds!(what, value)
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
end
