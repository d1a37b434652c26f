# frozen_string_literal: true

require "socket"

module FiberJob
  # A worker process: builds the Rust engine for its queues, installs signal handlers,
  # runs an executor until stopped, then shuts the engine down.
  #
  # Signals (handled without Redis calls in the trap): TERM and INT stop gracefully
  # (buffered jobs go back at once, running jobs get `shutdown_timeout` seconds, then
  # are interrupted and given back); TSTP stops fetching (quiet).
  class Worker
    SIGNALS = { "TERM" => :stop, "INT" => :stop, "TSTP" => :quiet }.freeze

    attr_reader :queues

    # @param queues [Array<Symbol,String>] queues to work (default: config.queues)
    # @param concurrency [Integer, nil] overrides every queue's concurrency
    # @param executor [Symbol, nil] :fiber or :thread (default: config.executor)
    def initialize(queues: nil, concurrency: nil, executor: nil)
      config = FiberJob.config
      @queues = (queues ? Configuration.new.tap { |c| c.queues = queues }.queues : config.queues)
      @concurrency = concurrency && Configuration.new.tap { |c| c.concurrency = concurrency }.concurrency
      @executor_name = executor ? Configuration.new.tap { |c| c.executor = executor }.executor : config.executor
      @native = nil
      @stop_requested = false
    end

    # Works jobs until stopped (a signal or #stop). Blocks.
    def start
      config = FiberJob.config
      @limits = @queues.map { |q| @concurrency || config.concurrency_for(q) }
      @native = Native::Worker.new(config.redis_url, config.prefix, config.network_timeout.to_f,
                                   identity, @queues, @limits, @queues.map { config.prefetch })
      previous = install_signal_handlers
      logs = LogBridge.new(FiberJob.logger).start
      cron = FiberJob.register_cron_jobs.map { |job| [job.name, job.queue_name, job.cron] }
      @native._start(cron, config.cron_time_zone == :utc)
      @native._stop if @stop_requested
      log_banner(@limits)
      executor(config).run
      @native._shutdown
      FiberJob.logger.info("worker #{@native._identity} stopped")
    ensure
      logs&.stop
      restore_signal_handlers(previous) if previous
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

    private

    def executor(config)
      case @executor_name
      when :thread
        require_relative "executor/thread_executor"
        Executor::ThreadExecutor.new(@native, config.shutdown_timeout, @limits.sum) do |timeout|
          Processor.new(@native, FiberJob.logger, timeout: timeout)
        end
      else
        require_relative "executor/fiber_executor"
        Executor::FiberExecutor.new(@native, config.shutdown_timeout) do |timeout|
          Processor.new(@native, FiberJob.logger, timeout: timeout)
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
      queues = @queues.zip(limits).map { |q, n| "#{q}=#{n}" }.join(", ")
      FiberJob.logger.info("worker #{@native._identity} started: queues #{queues}, executor #{@executor_name}")
    end
  end
end
