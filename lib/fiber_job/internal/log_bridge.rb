# frozen_string_literal: true

module FiberJob
  module Internal
    # Carries the Rust engine's log lines (outages, recoveries, bad payloads) into
    # FiberJob.logger, so an app sees one log stream. A worker runs one thread that
    # waits for lines inside the engine without the GVL.
    class LogBridge
      # Seconds one wait for lines may last; bounds how late #stop is noticed.
      WAIT = 0.25

      def initialize(logger)
        @logger = logger
        @running = false
      end

      def start
        Native.log_level = [@logger.respond_to?(:level) ? @logger.level.to_i : Logger::INFO, Logger::ERROR].min
        @running = true
        @thread = Thread.new do
          pump(WAIT) while @running
          pump(0)
        end
        @thread.name = "fiber_job-log"
        self
      end

      def stop
        @running = false
        @thread&.join(WAIT * 8)
      end

      private

      def pump(wait)
        Native.drain_logs(wait).each { |severity, line| @logger.add(severity, line) }
      rescue StandardError => e
        warn "fiber_job: log bridge failed: #{e.class}: #{e.message}"
      end
    end
  end
end
