# frozen_string_literal: true

# FiberJob: background jobs for Ruby on a Rust engine. This file is the public entry
# point: configuration, the logger, and the requires of every public class.
require "json"
require "logger"
require "securerandom"

require_relative "fiber_job/version"
require_relative "fiber_job/errors"
require_relative "fiber_job/native"
require_relative "fiber_job/middleware"
require_relative "fiber_job/instrumentation"
require_relative "fiber_job/logging"
require_relative "fiber_job/configuration"
require_relative "fiber_job/arguments"
require_relative "fiber_job/after_commit"
require_relative "fiber_job/client"
require_relative "fiber_job/limits"
require_relative "fiber_job/job"
require_relative "fiber_job/cron_job"
require_relative "fiber_job/queue"
require_relative "fiber_job/taken_job"
require_relative "fiber_job/processor"
require_relative "fiber_job/log_bridge"
require_relative "fiber_job/worker"
require_relative "fiber_job/active_job" if defined?(::ActiveJob::Base)
require_relative "fiber_job/railtie" if defined?(::Rails::Railtie)

module FiberJob
  # Loaded when first named (most apps have no iterable job).
  autoload :IterableJob, File.expand_path("fiber_job/iterable_job", __dir__)
  autoload :Batch, File.expand_path("fiber_job/batch", __dir__)
  autoload :Embedded, File.expand_path("fiber_job/embedded", __dir__)
  autoload :ClassMetrics, File.expand_path("fiber_job/class_metrics", __dir__)

  class << self
    # Runs a worker inside this process on a thread of its own (a web server's: see
    # FiberJob::Embedded and `plugin :fiber_job` for Puma). Arguments as for
    # FiberJob::Worker.new. @return [FiberJob::Embedded]
    def embed(queues: nil, concurrency: nil, executor: nil)
      Embedded.new(Worker.new(queues: queues, concurrency: concurrency, executor: executor)).start
    end

    # @yieldparam config [FiberJob::Configuration]
    # @return [FiberJob::Configuration]
    def configure
      yield config # each setter validates its own value
      config.check!
      @client = nil
      @admin = nil
      if @logger
        logger.level = config.logger_level
        logger.formatter = Logging.formatter(config.log_format) if @default_logger
      end
      config
    end

    # @return [FiberJob::Configuration] the process-wide configuration
    def config
      @config ||= Configuration.new
    end

    # Restores every default (used by tests and by apps that reconfigure from scratch).
    def reset!
      @config = nil
      @client = nil
      @admin = nil
      @logger = nil
      Instrumentation.clear
    end

    # @return [Logger] where FiberJob logs; assign any Logger-compatible object
    # The default writes to $stdout in `log_format` (text or JSON, with the running
    # job's class, jid and queue on every line).
    def logger
      @logger ||= begin
        @default_logger = true
        Logger.new($stdout, level: config.logger_level, progname: "fiber_job",
                            formatter: Logging.formatter(config.log_format))
      end
    end

    def logger=(logger)
      @default_logger = false
      @logger = logger
    end

    # Subscribes to a job event (:enqueue, :perform, :retry, :dead); see
    # FiberJob::Instrumentation. @return [Proc] the block, for FiberJob.off
    def on(event, &block)
      Instrumentation.subscribe(event, &block)
    end

    def off(event, block)
      Instrumentation.unsubscribe(event, block)
    end

    # The native client (enqueue) for the current configuration and process.
    # @api private
    def client
      fresh_after_fork
      @client ||= Native::Client.new(config.connection, config.prefix)
    end

    # The native admin (what FiberJob::Queue and the Web UI read and change) for the
    # current configuration and process. @api private
    def admin
      fresh_after_fork
      @admin ||= Native::Admin.new(config.connection, config.prefix)
    end

    private

    # A forked child builds its own native objects (the runtime notices the new pid).
    def fresh_after_fork
      pid = Process.pid
      return if @native_pid == pid

      @native_pid = pid
      @client = nil
      @admin = nil
    end
  end
end
