# frozen_string_literal: true

require "uri"
require "yaml"
require "erb"

module FiberJob
  # Process-wide settings, with the defaults of the README's table. Every setter
  # validates, so a bad value fails at `configure`, naming the option.
  class Configuration
    LOG_LEVELS = %i[debug info warn error fatal].freeze
    # What a queue may be called: it goes into Redis key names and URLs.
    QUEUE_NAME = /\A[\w.:-]+\z/.freeze
    EXECUTORS = %i[fiber thread].freeze
    URL_SCHEMES = %w[redis rediss unix].freeze

    attr_reader :redis_url, :concurrency, :queues, :log_level,
                :executor, :shutdown_timeout, :network_timeout, :prefetch, :prefix,
                :cron_time_zone, :log_format, :job_log_level, :redis_tls, :redis_sentinels,
                :redis_sentinel_master, :redis_username, :redis_password, :redis_db,
                :redis_wait_replicas, :redis_cluster, :sidekiq_compat, :enqueue_after_commit,
                :health_port, :health_host

    # Keys a YAML file (`fiber_job -C`, `config/fiber_job.yml`) may set.
    FILE_KEYS = %i[redis_url concurrency queues queue_concurrency log_level executor
                   shutdown_timeout network_timeout prefetch prefix cron_time_zone
                   log_format job_log_level redis_tls redis_sentinels redis_sentinel_master
                   redis_username redis_password redis_db redis_wait_replicas redis_cluster
                   sidekiq_compat enqueue_after_commit health_port health_host].freeze
    TLS_KEYS = %i[ca_file cert_file key_file verify_peer].freeze
    LOG_FORMATS = %i[text json].freeze

    def initialize
      self.redis_url = ENV.fetch("REDIS_URL", "redis://localhost:6379")
      # Only an explicit redis_url (or REDIS_URL) conflicts with Sentinel settings.
      @redis_url_given = ENV.key?("REDIS_URL")
      @redis_tls = nil
      @redis_sentinels = []
      @redis_sentinel_master = nil
      @redis_cluster = []
      @redis_username = nil
      @redis_password = nil
      @redis_db = 0
      # Replicas each enqueue waits for (WAIT) before it returns; 0: none.
      @redis_wait_replicas = 0
      self.concurrency = 2
      # { default: 2 } (the README's default) until set: the default queue's entry
      # follows `concurrency` (see #queue_concurrency).
      @queue_concurrency = {}
      @default_follows = true
      self.queues = [:default]
      self.log_level = ENV.fetch("FIBER_JOB_LOG_LEVEL", "info")
      self.executor = :fiber
      # Seconds running jobs get to finish after TERM (Sidekiq's default, 25).
      self.shutdown_timeout = 25
      # Seconds a Redis call may take before it fails with ConnectionError.
      self.network_timeout = 5
      # Extra jobs a worker may hold per queue beyond its concurrency: :auto (about
      # what it finishes in 5 ms and two fetch round trips, by the jobs' measured run
      # time), or a fixed Integer.
      self.prefetch = :auto
      self.prefix = "fiber_job"
      # Cron expressions are read in the process's local time, like crontab (or :utc).
      self.cron_time_zone = :local
      # :text (one readable line) or :json (one object per line).
      self.log_format = ENV.fetch("FIBER_JOB_LOG_FORMAT", "text")
      # Workers also work what real Sidekiq clients push (README "Switching from Sidekiq").
      @sidekiq_compat = false
      # Enqueues inside an ActiveRecord transaction wait for its commit (AfterCommit).
      @enqueue_after_commit = false
      # Health checks (`fiber_job --health-port`): off unless a port is set.
      @health_port = nil
      @health_host = "0.0.0.0"
      # Level of the per-job start/done/fail lines; false logs none.
      self.job_log_level = :info
      @client_middleware = Middleware::Chain.new
      @server_middleware = Middleware::Chain.new
    end

    # The chain around every enqueue. Yields it when given a block.
    # @return [FiberJob::Middleware::Chain]
    def client_middleware
      yield @client_middleware if block_given?
      @client_middleware
    end

    # The chain around every perform. Yields it when given a block.
    # @return [FiberJob::Middleware::Chain]
    def server_middleware
      yield @server_middleware if block_given?
      @server_middleware
    end

    def log_format=(value)
      format = value.to_s.downcase.to_sym
      raise ConfigurationError, "log_format #{value.inspect} is not :text or :json" unless LOG_FORMATS.include?(format)

      @log_format = format
    end

    def job_log_level=(value)
      if value == false || value.nil?
        @job_log_level = false
        return
      end
      level = value.to_s.downcase.to_sym
      unless LOG_LEVELS.include?(level)
        raise ConfigurationError, "job_log_level #{value.inspect} is not one of #{LOG_LEVELS.join(", ")} or false"
      end
      @job_log_level = level
    end

    # Applies settings from a Hash (string or symbol keys). With `env`, a section named
    # after the environment (e.g. `production:`) is merged over the top level.
    def apply(hash, env: nil, source: "configuration")
      raise ConfigurationError, "#{source} must hold a mapping of settings, got #{hash.class}" unless hash.is_a?(Hash)

      settings = hash.transform_keys(&:to_s)
      section = env && settings[env.to_s].is_a?(Hash) ? settings.delete(env.to_s) : {}
      # Other environments' sections are mappings under names that are not settings.
      settings = settings.reject { |k, v| v.is_a?(Hash) && !FILE_KEYS.include?(k.to_sym) }
      settings = settings.merge(section.transform_keys(&:to_s))
      settings.each do |key, value|
        unless FILE_KEYS.include?(key.to_sym)
          raise ConfigurationError, "#{source}: unknown setting #{key.inspect}; known: #{FILE_KEYS.join(", ")}"
        end

        public_send(:"#{key}=", value)
      end
      self
    end

    # Reads a YAML file (ERB allowed) and applies it.
    def load_file(path, env: nil)
      text = File.read(path)
      data = YAML.safe_load(ERB.new(text).result, aliases: true) || {}
      apply(data, env: env, source: path.to_s)
    rescue Errno::ENOENT
      raise ConfigurationError, "config file #{path} does not exist"
    rescue Psych::SyntaxError => e
      raise ConfigurationError, "config file #{path} is not valid YAML: #{e.message}"
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
      @redis_url_given = true
    end

    # TLS for rediss:// (and a Sentinel's master): { ca_file:, cert_file:, key_file:,
    # verify_peer: true }, all optional; nil uses the system's CAs.
    def redis_tls=(value)
      if value.nil?
        @redis_tls = nil
        return
      end
      raise ConfigurationError, "redis_tls must be a Hash like { ca_file: \"ca.pem\" }, got #{value.inspect}" unless value.is_a?(Hash)

      tls = value.transform_keys(&:to_sym)
      unknown = tls.keys - TLS_KEYS
      raise ConfigurationError, "redis_tls: unknown key(s) #{unknown.join(", ")}; known: #{TLS_KEYS.join(", ")}" unless unknown.empty?

      %i[ca_file cert_file key_file].each do |k|
        next if tls[k].nil?
        raise ConfigurationError, "redis_tls #{k}: #{tls[k].inspect} is not a file path" unless tls[k].is_a?(String)
        raise ConfigurationError, "redis_tls #{k}: #{tls[k]} does not exist" unless File.file?(tls[k])
      end
      if tls.key?(:verify_peer) && ![true, false].include?(tls[:verify_peer])
        raise ConfigurationError, "redis_tls verify_peer must be true or false, got #{tls[:verify_peer].inspect}"
      end
      if tls[:cert_file].nil? != tls[:key_file].nil?
        raise ConfigurationError, "redis_tls: cert_file and key_file go together (mutual TLS needs both)"
      end
      @redis_tls = { ca_file: nil, cert_file: nil, key_file: nil, verify_peer: true }.merge(tls)
    end

    # Sentinel URLs ("redis://[:password@]host:26379"); with them, FiberJob asks the
    # sentinels for the master named redis_sentinel_master, also after a failover.
    def redis_sentinels=(value)
      list = Array(value).map(&:to_s)
      list.each do |url|
        unless url.match?(%r{\Arediss?://[^/\s]+\z}) || url.match?(%r{\Arediss?://[^/\s]+/\z})
          raise ConfigurationError, "redis_sentinels: #{Internal::Native.mask_password(url).inspect} is not a sentinel URL like redis://10.0.0.1:26379"
        end
      end
      @redis_sentinels = list
    end

    # Seed nodes of a Redis Cluster ("redis://[:password@]host:7000", rediss:// for
    # TLS): FiberJob learns the other nodes and the slots from them, and follows slots
    # as they move.
    def redis_cluster=(value)
      list = Array(value).map(&:to_s)
      list.each do |url|
        unless url.match?(%r{\Arediss?://[^/\s]+/?\z})
          raise ConfigurationError, "redis_cluster: #{Internal::Native.mask_password(url).inspect} is not a Cluster node URL like redis://10.0.0.1:7000 " \
                                    "(a Cluster has only database 0)"
        end
      end
      @redis_cluster = list
    end

    def redis_sentinel_master=(value)
      name = value&.to_s
      raise ConfigurationError, "redis_sentinel_master must be a name like \"mymaster\"" if name && (name.empty? || name.match?(/\s/))

      @redis_sentinel_master = name
    end

    # The master's ACL user, password and database when connecting through Sentinel,
    # or the nodes' user and password of a Cluster (a redis_url carries its own).
    def redis_username=(value)
      @redis_username = value&.to_s
    end

    def redis_password=(value)
      @redis_password = value&.to_s
    end

    def redis_db=(value)
      raise ConfigurationError, "redis_db must be an Integer >= 0, got #{value.inspect}" unless value.is_a?(Integer) && value >= 0

      @redis_db = value
    end

    # How many replicas must confirm each enqueue (Redis WAIT, within half of
    # network_timeout) before perform_async returns: a failover then cannot lose an
    # acknowledged job. Fewer confirmations raise ConnectionError (the job is stored on
    # the master).
    def redis_wait_replicas=(value)
      unless value.is_a?(Integer) && value >= 0
        raise ConfigurationError, "redis_wait_replicas must be an Integer >= 0, got #{value.inspect}"
      end

      @redis_wait_replicas = value
    end

    # Checks settings that only make sense together; FiberJob.configure calls it.
    # @raise [FiberJob::ConfigurationError]
    def check!
      if @redis_sentinels.any? && @redis_url_given
        raise ConfigurationError, "redis_url and redis_sentinels are both set: use redis_url for one Redis, " \
                                  "or redis_sentinels with redis_sentinel_master for Sentinel (unset REDIS_URL too)"
      end
      if @redis_cluster.any? && (@redis_url_given || @redis_sentinels.any?)
        raise ConfigurationError, "redis_cluster is set together with #{@redis_sentinels.any? ? "redis_sentinels" : "redis_url"}: " \
                                  "a Cluster is reached through its nodes alone (unset REDIS_URL too)"
      end
      if @redis_cluster.any? && @redis_db != 0
        raise ConfigurationError, "a Redis Cluster has only database 0; remove redis_db"
      end
      if @redis_cluster.any? && @sidekiq_compat
        raise ConfigurationError, "sidekiq_compat needs a single Redis (or Sentinel), as Sidekiq does: its keys have no " \
                                  "Cluster hash tags; drain the Sidekiq queues before moving to redis_cluster"
      end
      if @redis_sentinels.any? && @redis_sentinel_master.nil?
        raise ConfigurationError, "redis_sentinels is set but redis_sentinel_master is not: name the master the sentinels watch"
      end
      self
    end

    # Where Redis is, for the engine's native objects. @api private
    def connection
      { url: @redis_url, tls: @redis_tls, sentinels: @redis_sentinels, sentinel_master: @redis_sentinel_master,
        cluster: @redis_cluster, username: @redis_username, password: @redis_password, db: @redis_db, network_timeout: @network_timeout.to_f,
        wait_replicas: @redis_wait_replicas }
    end

    # Where Redis is, password masked, for logs and the banner.
    def redis_description
      if @redis_cluster.any?
        "Redis Cluster via #{@redis_cluster.map { |u| Internal::Native.mask_password(u) }.join(", ")}"
      elsif @redis_sentinels.any?
        "sentinel master #{@redis_sentinel_master.inspect} via #{@redis_sentinels.map { |u| Internal::Native.mask_password(u) }.join(", ")}"
      else
        Internal::Native.mask_password(@redis_url) + (@redis_tls ? " (TLS#{@redis_tls[:verify_peer] ? "" : ", peer not verified"})" : "")
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
      unless value == :auto || (value.is_a?(Integer) && value >= 0)
        raise ConfigurationError, "prefetch must be :auto or an Integer >= 0, got #{value.inspect}"
      end
      @prefetch = value
    end

    # true: workers also take the jobs real Sidekiq clients push into Sidekiq's keys
    # (`queue:<name>` lists, the `schedule` and `retry` sets) into FiberJob's queues.
    def sidekiq_compat=(value)
      raise ConfigurationError, "sidekiq_compat is true or false, got #{value.inspect}" unless [true, false].include?(value)

      @sidekiq_compat = value
    end

    def enqueue_after_commit=(value)
      unless [true, false].include?(value)
        raise ConfigurationError, "enqueue_after_commit is true or false, got #{value.inspect}"
      end

      Internal::AfterCommit.used = true if value
      @enqueue_after_commit = value
    end

    def health_port=(value)
      unless value.nil? || (value.is_a?(Integer) && value.between?(1, 65_535))
        raise ConfigurationError, "health_port is a TCP port (1-65535) or nil, got #{value.inspect}"
      end

      @health_port = value
    end

    def health_host=(value)
      raise ConfigurationError, "health_host is an address to listen on, e.g. \"0.0.0.0\"" unless value.is_a?(String) && !value.empty?

      @health_host = value
    end

    def prefix=(value)
      str = value.to_s
      raise ConfigurationError, "prefix must be a non-empty String without spaces" if str.empty? || str.match?(/\s/)

      @prefix = str
    end

    # The Logger level constant for `log_level`.
    def logger_level
      Logger.const_get(@log_level.to_s.upcase)
    end

    # @api private
    def self.positive_integer(name, value)
      return value if value.is_a?(Integer) && value.positive?

      raise ConfigurationError, "#{name} must be a positive Integer, got #{value.inspect}"
    end

    private_class_method :positive_integer

    private

    def positive_integer(name, value)
      self.class.send(:positive_integer, name, value)
    end

    def non_negative(name, value)
      return value if value.is_a?(Numeric) && value >= 0

      raise ConfigurationError, "#{name} must be a number of seconds >= 0, got #{value.inspect}"
    end
  end
end

require_relative "configuration/queues"
