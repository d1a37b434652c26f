# frozen_string_literal: true

# FiberJob: background jobs for Ruby on a Rust engine. This file is the public entry
# point: configuration, the logger, and the requires of every public class.
require "json"
require "logger"
require "securerandom"

require_relative "fiber_job/version"
require_relative "fiber_job/errors"
require_relative "fiber_job/internal"
require_relative "fiber_job/native"
require_relative "fiber_job/middleware"
require_relative "fiber_job/internal/instrumentation"
require_relative "fiber_job/logging"
require_relative "fiber_job/configuration"
require_relative "fiber_job/internal/arguments"
require_relative "fiber_job/internal/after_commit"
require_relative "fiber_job/internal/enqueue"
require_relative "fiber_job/internal/limits"
require_relative "fiber_job/internal/job_settings"
require_relative "fiber_job/job"
require_relative "fiber_job/cron_job"
require_relative "fiber_job/queue"
require_relative "fiber_job/internal/taken_job"
require_relative "fiber_job/internal/processor"
require_relative "fiber_job/internal/log_bridge"
require_relative "fiber_job/worker"
require_relative "fiber_job/active_job" if defined?(::ActiveJob::Base)
require_relative "fiber_job/railtie" if defined?(::Rails::Railtie)

module FiberJob
  private_constant :Internal

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
      Internal.reset!
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
      Internal.reset!
      @logger = nil
      Internal::Instrumentation.clear
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
    # the README's metrics guide. @return [Proc] the block, for FiberJob.off
    def on(event, &block)
      Internal::Instrumentation.subscribe(event, &block)
    end

    def off(event, block)
      Internal::Instrumentation.unsubscribe(event, block)
    end

    # Records every loaded cron job in Redis (for dashboards) and returns them.
    # Idempotent; workers call it when they start.
    # @return [Array<Class>]
    def register_cron_jobs
      jobs = CronJob.all
      entries = jobs.map do |job|
        [job.name, JSON.generate("class" => job.name, "cron" => job.cron, "queue" => job.queue_name,
                                 "time_zone" => config.cron_time_zone.to_s)]
      end
      Internal.cron._register(entries)
      jobs
    end
  end
end
