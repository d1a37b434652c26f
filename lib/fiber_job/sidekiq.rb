# frozen_string_literal: true

require_relative "../fiber_job"

if defined?(Sidekiq::VERSION)
  raise LoadError, "fiber_job/sidekiq replaces the sidekiq gem: require \"fiber_job/sidekiq\" instead of " \
                   "\"sidekiq\", not both (Sidekiq #{Sidekiq::VERSION} is loaded)"
end

module FiberJob
  # The instance side of a Sidekiq job class run by FiberJob (`include Sidekiq::Job`
  # under `require "fiber_job/sidekiq"`). The processor runs classes that include it
  # as it runs FiberJob::Job subclasses.
  module SidekiqJob
    # Sidekiq's retry count when a job says `retry: true`.
    DEFAULT_RETRIES = 25

    include BatchMember

    attr_accessor :jid, :retry_count

    def logger = FiberJob.logger

    # Sidekiq jobs have no time limit.
    def timeout = nil

    # The job's `retry` (its payload's, as `set(retry:)` or a Sidekiq client wrote it,
    # else the class's): true = 25, false = 0, or a number.
    def max_retries
      option = payload_retry
      option = self.class.get_sidekiq_options["retry"] if option.nil?
      case option
      when true then DEFAULT_RETRIES
      when Integer then option
      else 0
      end
    end

    # Sidekiq's default backoff for retry number `attempt` (1, 2, …).
    def retry_delay(attempt)
      count = attempt - 1
      (count**4) + 15 + (rand(10) * (count + 1))
    end

    # The class's `sidekiq_retry_in` block's answer for this failure: seconds, or
    # :kill/:discard (to the dead set now), nil for the default. @api private
    def sidekiq_retry_delay(attempt, error)
      block = self.class.sidekiq_retry_in_block
      value = block&.call(attempt - 1, error)
      case value
      when Numeric then value
      when :kill, :discard then nil
      else retry_delay(attempt)
      end
    end

    # Runs the class's `sidekiq_retries_exhausted` block. @api private
    def sidekiq_retries_exhausted(payload, error)
      self.class.sidekiq_retries_exhausted_block&.call(payload, error)
    end

    def priority_retry? = false

    private

    def payload_retry
      raw = (worker = Worker.native) && jid && worker._busy_payload(jid)
      raw && JSON.parse(raw)["retry"]
    rescue JSON::ParserError
      nil
    end
  end
end

# What `require "sidekiq"` gives a job class, mapped to FiberJob (README "Switching
# from Sidekiq" lists what is and is not supported). Written inside `module FiberJob`
# so that the shim reaches the gem's private `Internal`.
module FiberJob
  module ::Sidekiq
    # Options every job class starts from (Sidekiq's defaults).
    DEFAULT_JOB_OPTIONS = { "retry" => true, "queue" => "default" }.freeze
    # The options FiberJob acts on; the others are kept (get_sidekiq_options) and ignored.
    KNOWN_OPTIONS = %w[queue retry dead backtrace tags pool retry_queue].freeze

    class << self
      def default_job_options
        @default_job_options ||= DEFAULT_JOB_OPTIONS.dup
      end

      def default_job_options=(options)
        @default_job_options = DEFAULT_JOB_OPTIONS.merge(options.transform_keys(&:to_s))
      end
      alias default_worker_options default_job_options
      alias default_worker_options= default_job_options=

      def logger = FiberJob.logger

      # Yields FiberJob's configuration, whose `server_middleware` and
      # `client_middleware` chains take Sidekiq's `add`, `remove`, `insert_before`, …
      def configure_server
        yield FiberJob.config
      end

      def configure_client
        yield FiberJob.config
      end

      def server? = !FiberJob::Worker.native.nil?

      def redis
        raise NotImplementedError, "Sidekiq.redis is not available under fiber_job/sidekiq: FiberJob's connection is " \
                                   "its engine's; read queues with FiberJob::Queue"
      end
    end

    # `include Sidekiq::Job` (or `Sidekiq::Worker`).
    module Job
      def self.included(base)
        base.include(FiberJob::SidekiqJob)
        base.extend(ClassMethods)
      end

      module ClassMethods
        def sidekiq_options(options = {})
          options = options.transform_keys(&:to_s)
          unknown = options.keys - KNOWN_OPTIONS
          FiberJob.logger.warn("#{name}: sidekiq_options #{unknown.join(", ")} are ignored under FiberJob") if unknown.any?
          if options.key?("retry") && ![true, false].include?(options["retry"]) && !options["retry"].is_a?(Integer)
            raise ArgumentError, "#{name} sidekiq_options retry: is true, false or a number of retries, got #{options["retry"].inspect}"
          end

          @sidekiq_options = get_sidekiq_options.merge(options)
        end

        def get_sidekiq_options # rubocop:disable Naming/AccessorMethodName -- Sidekiq's name
          @sidekiq_options ||
            (superclass.respond_to?(:get_sidekiq_options) ? superclass.get_sidekiq_options : Sidekiq.default_job_options)
        end

        def sidekiq_retry_in(&block)
          @sidekiq_retry_in_block = block
        end

        def sidekiq_retries_exhausted(&block)
          @sidekiq_retries_exhausted_block = block
        end

        # @api private
        def sidekiq_retry_in_block = @sidekiq_retry_in_block || (superclass.respond_to?(:sidekiq_retry_in_block) && superclass.sidekiq_retry_in_block) || nil

        # @api private
        def sidekiq_retries_exhausted_block
          @sidekiq_retries_exhausted_block ||
            (superclass.respond_to?(:sidekiq_retries_exhausted_block) && superclass.sidekiq_retries_exhausted_block) || nil
        end

        def queue_name = get_sidekiq_options["queue"].to_s

        def perform_async(*args) = Setter.new(self, {}).perform_async(*args)

        def perform_in(interval, *args) = Setter.new(self, {}).perform_in(interval, *args)
        alias perform_at perform_in

        def perform_bulk(args_list, batch_size: 1000) = Setter.new(self, {}).perform_bulk(args_list, batch_size: batch_size)

        def perform_inline(*args) = new.perform(*args)
        alias perform_sync perform_inline

        # Options for the next enqueue: queue:, retry:, wait:, wait_until:.
        def set(options) = Setter.new(self, options.transform_keys(&:to_s))

        # @api private
        def client_push(item) = Client.push(item.merge("class" => self))
      end
    end
    Worker = Job

    # `Job.set(...)`: an enqueue with options.
    class Setter
      def initialize(klass, options)
        @klass = klass
        @options = options
      end

      def set(options) = Setter.new(@klass, @options.merge(options.transform_keys(&:to_s)))

      def perform_async(*args)
        return perform_at(@options["wait_until"], *args) if @options["wait_until"]
        return perform_in(@options["wait"], *args) if @options["wait"]

        Internal::Enqueue.push(@klass, args, queue: queue, extra: extra)
      end

      def perform_in(interval, *args)
        at = interval.is_a?(Numeric) && interval < 1_000_000_000 ? Time.now.to_f + interval : epoch(interval)
        Internal::Enqueue.schedule(@klass, at, args, queue: queue, extra: extra)
      end
      alias perform_at perform_in

      def perform_bulk(args_list, batch_size: 1000)
        args_list.each_slice(batch_size).flat_map do |slice|
          extra ? slice.map { |args| perform_async(*args) } : Internal::Enqueue.push_bulk(@klass, slice, queue: queue)
        end
      end

      private

      def queue = (@options["queue"] || @klass.queue_name).to_s

      # The payload's `retry` when it is not Sidekiq's default, as Sidekiq writes it.
      def extra
        option = @options.fetch("retry") { @klass.get_sidekiq_options["retry"] }
        option == true ? nil : { "retry" => option }
      end

      def epoch(time)
        return time.to_f if time.is_a?(Numeric) || time.is_a?(Time)
        return time.to_time.to_f if time.respond_to?(:to_time)

        Time.now.to_f + time.to_f # an ActiveSupport::Duration
      end
    end

    # `Sidekiq::Client.push("class" => K, "args" => [...], "queue" => …, "at" => …)`.
    class Client
      class << self
        def push(item)
          setter(item).then { |s| item["at"] ? s.perform_at(item["at"], *item["args"]) : s.perform_async(*item["args"]) }
        end

        def push_bulk(items)
          setter(items).perform_bulk(items["args"])
        end

        def enqueue(klass, *args) = klass.perform_async(*args)

        def enqueue_to(queue, klass, *args) = klass.set(queue: queue).perform_async(*args)

        def enqueue_in(interval, klass, *args) = klass.perform_in(interval, *args)

        private

        def setter(item)
          klass = item["class"]
          klass = Object.const_get(klass) if klass.is_a?(String)
          raise ArgumentError, "Sidekiq::Client.push needs a job class, got #{item["class"].inspect}" unless klass.respond_to?(:set)

          klass.set(item.slice("queue", "retry"))
        end
      end
    end
  end
end
