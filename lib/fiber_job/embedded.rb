# frozen_string_literal: true

module FiberJob
  # A worker inside another process — a web server's (`plugin :fiber_job` for Puma), or
  # any long-lived one — on a thread of its own, its executor under its own reactor.
  # It installs no signal handlers: the host process stops it with #stop, which is
  # graceful (buffered jobs go back at once, running ones get `shutdown_timeout`).
  #
  #   embedded = FiberJob.embed(queues: %w[default mailers], concurrency: 5)
  #   …
  #   embedded.stop
  class Embedded
    attr_reader :worker

    def initialize(worker)
      @worker = worker
      @thread = nil
    end

    # Starts the worker's thread. @return [self]
    def start
      @thread = Thread.new do
        Thread.current.name = "fiber_job-embedded"
        @worker.start
      rescue Exception => e # rubocop:disable Lint/RescueException -- logged: it ends only this thread
        FiberJob.logger.error("embedded FiberJob worker stopped: #{e.class}: #{e.message}")
      end
      self
    end

    # Stops the worker gracefully and waits for it (at most `timeout` seconds).
    # @return [Boolean] whether it stopped in time
    def stop(timeout: FiberJob.config.shutdown_timeout + 10)
      @worker.stop
      @thread.nil? || !@thread.join(timeout).nil?
    end

    def running? = @thread&.alive? || false
  end
end
