# frozen_string_literal: true

require "fiber_job" unless defined?(FiberJob::Job)

module FiberJob
  # Test mode, Sidekiq-style. `require "fiber_job/testing"` switches to fake!:
  #
  #   FiberJob::Testing.fake!      # jobs are collected in MyJob.jobs, not sent to Redis
  #   FiberJob::Testing.inline!    # jobs run at once, in the caller, arguments JSON round-tripped
  #   FiberJob::Testing.disable!   # jobs go to Redis as in production
  #   FiberJob::Testing.inline! { … }  # a mode for the block only
  #
  # Client middleware runs in every mode (it sees what production would send);
  # server middleware runs when fake jobs are drained and in inline mode.
  module Testing
    MODES = %i[fake inline disable].freeze

    # Collects payloads per class name (fake) or performs them (inline).
    class Sink
      attr_reader :jobs

      def initialize
        @jobs = Hash.new { |h, k| h[k] = [] }
      end

      def receive(_job_class, payloads, at)
        payloads.each do |payload|
          # A JSON round trip, so a test sees exactly what a worker would.
          payload = JSON.parse(JSON.generate(payload))
          if Testing.inline?
            Testing.perform(payload)
          else
            @jobs[payload["class"]] << payload
          end
        end
        at
      end
    end

    @mode = :fake
    @sink = Sink.new

    class << self
      attr_reader :mode

      MODES.each do |name|
        define_method(:"#{name}!") { |&block| switch(name, &block) }
        define_method(:"#{name == :disable ? :disabled : name}?") { @mode == name }
      end

      # Every fake job, all classes: [payload Hash, …] in enqueue order per class.
      def jobs
        @sink.jobs.values.flatten
      end

      # The fake jobs of one class (a FiberJob::Job subclass or its name).
      def jobs_for(klass)
        @sink.jobs[klass.is_a?(String) ? klass : klass.name]
      end

      # Forgets every fake job.
      def clear
        @sink.jobs.clear
      end

      # Performs fake jobs of every class, including ones enqueued while draining,
      # until none is left. Scheduled jobs run too (their time is not waited for).
      def drain
        until (klass = @sink.jobs.keys.find { |k| @sink.jobs[k].any? }).nil?
          drain_class(klass)
        end
      end

      # Performs the fake jobs of one class until none is left.
      def drain_class(klass)
        name = klass.is_a?(String) ? klass : klass.name
        while (payload = @sink.jobs[name].shift)
          perform(payload)
        end
      end

      # Runs one payload like a worker would: the worker's class lookup, jid,
      # retry_count, the server middleware. Errors propagate to the test.
      # @raise [FiberJob::UnknownJobError] when the payload names no job class
      def perform(payload)
        klass, = Internal::Processor.job_class(payload["class"])
        unless klass.is_a?(Class)
          raise UnknownJobError, "#{payload["class"].inspect} is not a FiberJob::Job subclass loaded here"
        end

        job = klass.new
        job.jid = payload["jid"]
        job.retry_count = payload["retry_count"].to_i
        chain = FiberJob.config.server_middleware
        if chain.empty?
          job.perform(*payload["args"])
        else
          chain.invoke(job, payload, payload["queue"]) { job.perform(*payload["args"]) }
        end
      end

      private

      def switch(mode)
        previous = @mode
        apply(mode)
        return self unless block_given?

        begin
          yield
        ensure
          apply(previous)
        end
      end

      def apply(mode)
        @mode = mode
        Internal::Enqueue.sink = mode == :disable ? nil : @sink
      end
    end

    # Class methods every job class gets in test mode.
    module JobMethods
      # Fake jobs of this class (payload Hashes: "class", "args", "jid", "queue", …).
      def jobs
        Testing.jobs_for(self)
      end

      # Performs this class's fake jobs until none is left.
      def drain
        Testing.drain_class(self)
      end

      # Performs only the oldest fake job of this class.
      def perform_one
        payload = jobs.shift
        raise FiberJob::Error, "#{name}.perform_one: no #{name} job is enqueued" unless payload

        Testing.perform(payload)
      end

      # Forgets this class's fake jobs.
      def clear
        jobs.clear
      end
    end

    FiberJob::Job.extend(JobMethods)
    fake!
  end
end
