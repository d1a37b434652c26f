# frozen_string_literal: true

require "uri"

module FiberJob
  # Process-wide settings, with the defaults of the README's table. Every setter
  # validates, so a bad value fails at `configure`, naming the option.
  class Configuration
    LOG_LEVELS = %i[debug info warn error fatal].freeze
    EXECUTORS = %i[fiber thread].freeze
    URL_SCHEMES = %w[redis rediss unix].freeze

    attr_reader :redis_url, :concurrency, :queues, :queue_concurrency, :log_level,
                :executor, :shutdown_timeout, :network_timeout, :prefetch, :prefix,
                :cron_time_zone

    def initialize
      self.redis_url = ENV.fetch("REDIS_URL", "redis://localhost:6379")
      self.concurrency = 2
      self.queues = [:default]
      self.queue_concurrency = { default: 2 }
      self.log_level = ENV.fetch("FIBER_JOB_LOG_LEVEL", "info")
      self.executor = :fiber
      # Seconds running jobs get to finish after TERM (Sidekiq's default, 25).
      self.shutdown_timeout = 25
      # Seconds a Redis call may take before it fails with ConnectionError.
      self.network_timeout = 5
      # Extra jobs a worker may hold per queue beyond its concurrency (0: none).
      self.prefetch = 0
      self.prefix = "fiber_job"
      # Cron expressions are read in the process's local time, like crontab (or :utc).
      self.cron_time_zone = :local
    end

    def cron_time_zone=(value)
      zone = value.to_s.downcase.to_sym
      raise ConfigurationError, "cron_time_zone #{value.inspect} is not :local or :utc" unless %i[local utc].include?(zone)

      @cron_time_zone = zone
    end

    def redis_url=(url)
      url = url.to_s
      uri = begin
        URI.parse(url)
      rescue URI::InvalidURIError => e
        raise ConfigurationError, "redis_url #{url.inspect} is not a URL (#{e.message}); use e.g. redis://localhost:6379/0"
      end
      unless URL_SCHEMES.include?(uri.scheme)
        raise ConfigurationError, "redis_url #{url.inspect} must start with redis://, rediss:// or unix://"
      end
      @redis_url = url
    end

    def concurrency=(value)
      @concurrency = positive_integer(:concurrency, value)
    end

    def queues=(value)
      list = Array(value)
      raise ConfigurationError, "queues must list at least one queue, e.g. [:default]" if list.empty?
      @queues = list.map { |q| queue_name(:queues, q) }.uniq
    end

    def queue_concurrency=(value)
      raise ConfigurationError, "queue_concurrency must be a Hash like { default: 5 }, got #{value.inspect}" unless value.is_a?(Hash)

      @queue_concurrency = value.to_h do |q, n|
        [queue_name(:queue_concurrency, q), positive_integer(:"queue_concurrency[#{q.inspect}]", n)]
      end
    end

    def log_level=(value)
      level = value.to_s.downcase.to_sym
      unless LOG_LEVELS.include?(level)
        raise ConfigurationError, "log_level #{value.inspect} is not one of #{LOG_LEVELS.join(", ")}"
      end
      @log_level = level
    end

    def executor=(value)
      sym = value.to_s.to_sym
      raise ConfigurationError, "executor #{value.inspect} is not one of :fiber, :thread" unless EXECUTORS.include?(sym)

      @executor = sym
    end

    def shutdown_timeout=(value)
      @shutdown_timeout = non_negative(:shutdown_timeout, value)
    end

    def network_timeout=(value)
      @network_timeout = non_negative(:network_timeout, value)
      raise ConfigurationError, "network_timeout must be more than 0 seconds" if @network_timeout.zero?
    end

    def prefetch=(value)
      unless value.is_a?(Integer) && value >= 0
        raise ConfigurationError, "prefetch must be an Integer >= 0, got #{value.inspect}"
      end
      @prefetch = value
    end

    def prefix=(value)
      str = value.to_s
      raise ConfigurationError, "prefix must be a non-empty String without spaces" if str.empty? || str.match?(/\s/)

      @prefix = str
    end

    # Concurrency of one queue: its queue_concurrency entry, else `concurrency`.
    def concurrency_for(queue)
      @queue_concurrency.fetch(queue.to_s) { @concurrency }
    end

    # The Logger level constant for `log_level`.
    def logger_level
      Logger.const_get(@log_level.to_s.upcase)
    end

    private

    def positive_integer(name, value)
      return value if value.is_a?(Integer) && value.positive?

      raise ConfigurationError, "#{name} must be a positive Integer, got #{value.inspect}"
    end

    def non_negative(name, value)
      return value if value.is_a?(Numeric) && value >= 0

      raise ConfigurationError, "#{name} must be a number of seconds >= 0, got #{value.inspect}"
    end

    def queue_name(option, value)
      name = value.to_s
      unless (value.is_a?(Symbol) || value.is_a?(String)) && name.match?(/\A[\w.:-]+\z/)
        raise ConfigurationError, "#{option}: #{value.inspect} is not a queue name (use a Symbol or String of letters, digits, _ . : -)"
      end
      name
    end
  end
end
