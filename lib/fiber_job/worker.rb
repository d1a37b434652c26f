# frozen_string_literal: true

require "socket"

module FiberJob
  # A worker process: builds the Rust engine for its queues, installs signal handlers,
  # runs an executor until stopped, then shuts the engine down.
  #
  # Signals (handled without Redis calls in the trap): TERM and INT stop gracefully
  # (buffered jobs go back at once, running jobs get `shutdown_timeout` seconds, then
  # are interrupted and given back); TSTP stops fetching (quiet); TTIN logs the
  # backtrace of every running job and thread.
  class Worker
    SIGNALS = { "TERM" => :stop, "INT" => :stop, "TSTP" => :quiet, "TTIN" => :dump }.freeze

    attr_reader :queues

    # @param queues [Array<Symbol,String>] queues to work (default: config.queues);
    #   "name:N" entries set that queue's concurrency
    # @param concurrency [Integer, Hash, nil] overrides every queue's concurrency, or
    #   the listed queues' ({ "high" => 5 })
    # @param executor [Symbol, nil] :fiber or :thread (default: config.executor)
    # @raise [FiberJob::ConfigurationError] for a bad queue name, number or executor
    def initialize(queues: nil, concurrency: nil, executor: nil)
      config = FiberJob.config
      @queues, @given = queues ? Configuration.parse_queues(queues) : [config.queues, {}]
      if concurrency.is_a?(Hash)
        @given = Configuration.parse_limits(concurrency, :concurrency).merge(@given)
      else
        @all = concurrency
        config.limits_for(@queues, all: @all) # validates it now
      end
      @executor_name = executor ? Configuration.new.tap { |c| c.executor = executor }.executor : config.executor
      @native = nil
      @stop_requested = false
    end

    # Works jobs until stopped (a signal or #stop). Blocks.
    def start
      config = FiberJob.config
      @limits = config.limits_for(@queues, all: @all, given: @given)
      @native = Internal::Native::Worker.new(
        connection: config.check!.connection, prefix: config.prefix, identity: identity,
        queues: @queues.zip(@limits).map { |q, n| [q, n, config.prefetch == :auto ? nil : config.prefetch] },
        sidekiq_compat: config.sidekiq_compat,
        health: config.health_port && "#{config.health_host}:#{config.health_port}"
      )
      Worker.native = @native
      previous = install_signal_handlers
      logs = Internal::LogBridge.new(FiberJob.logger).start
      cron = FiberJob.register_cron_jobs.map { |job| [job.name, job.queue_name, job.cron, JSON.generate(Internal::JobSettings.cron_tick_fields(job))] }
      @native._start(cron, config.cron_time_zone == :utc)
      @native._stop if @stop_requested
      log_banner(@limits)
      fatal = run_executor(config)
      @native._shutdown
      FiberJob.logger.info("worker #{@native._identity} stopped")
      # An executor that can no longer run jobs ends the process non-zero, after the
      # shutdown above gave every job back.
      raise fatal if fatal
    ensure
      logs&.stop
      restore_signal_handlers(previous) if previous
      Worker.native = nil if Worker.native.equal?(@native)
    end

    class << self
      # The engine of the worker running in this process (nil when none): what a job
      # asks whether the worker is stopping (FiberJob::IterableJob). @api private
      attr_accessor :native
    end

    # Stops gracefully; safe from any thread and from a signal trap.
    def stop
      @stop_requested = true
      @native&._stop
    end

    # Stops fetching new jobs; running ones finish.
    def quiet
      @native&._quiet
    end

    # Logs what runs now: each job with its backtrace, then every other thread's.
    # Safe from a signal trap (the logging happens on a thread of its own).
    def dump
      Thread.new { log_dump }
    end

    private

    # Runs the executor until the worker stops; returns what ended it abnormally.
    def run_executor(config)
      executor(config).run
      nil
    rescue Exception => e # rubocop:disable Lint/RescueException
      @native._stop
      e
    end

    def executor(config)
      case @executor_name
      when :thread
        require_relative "internal/executor/thread_executor"
        Internal::Executor::ThreadExecutor.new(@native, config.shutdown_timeout, @limits.sum) do |timeout|
          Internal::Processor.new(FiberJob.logger, timeout: timeout)
        end
      else
        require_relative "internal/executor/fiber_executor"
        Internal::Executor::FiberExecutor.new(@native, config.shutdown_timeout) do |timeout|
          Internal::Processor.new(FiberJob.logger, timeout: timeout)
        end
      end
    end

    def identity
      @identity ||= "#{Socket.gethostname}:#{Process.pid}:#{SecureRandom.hex(4)}"
    end

    def install_signal_handlers
      return nil unless Thread.current == Thread.main

      SIGNALS.to_h do |signal, action|
        [signal, Signal.trap(signal) { public_send(action) }]
      rescue ArgumentError
        [signal, nil]
      end
    end

    def restore_signal_handlers(previous)
      previous.each { |signal, handler| Signal.trap(signal, handler || "DEFAULT") }
    end

    def log_banner(limits)
      config = FiberJob.config
      queues = @queues.zip(limits).map { |q, n| "#{q}=#{n}" }.join(", ")
      FiberJob.logger.info("FiberJob #{VERSION} worker #{@native._identity} started: queues #{queues} " \
                           "(concurrency #{limits.sum}), executor #{@executor_name}, " \
                           "redis #{config.redis_description}, shutdown_timeout #{config.shutdown_timeout}s")
    end

    def log_dump
      logger = FiberJob.logger
      jobs = Internal::Processor.running
      logger.warn("TTIN: #{jobs.size} job(s) running in #{@native&._identity}")
      now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      jobs.each do |carrier, ctx, started|
        trace = carrier.backtrace || []
        logger.warn("TTIN: #{ctx["class"]} jid=#{ctx["jid"]} queue=#{ctx["queue"]} running #{(now - started).round(2)}s\n  " \
                    "#{trace.join("\n  ")}")
      end
      Thread.list.each do |thread|
        next if thread == Thread.current

        logger.warn("TTIN: thread #{thread.name || thread.object_id} (#{thread.status})\n  " \
                    "#{(thread.backtrace || []).join("\n  ")}")
      end
    rescue StandardError => e
      warn "fiber_job: TTIN dump failed: #{e.class}: #{e.message}"
    end
  end
end
