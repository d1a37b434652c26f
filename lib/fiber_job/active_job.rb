# frozen_string_literal: true

require "fiber_job" unless defined?(FiberJob::Job)
require "active_job"

module FiberJob
  # Runs ActiveJob jobs on FiberJob. Select it with
  # `config.active_job.queue_adapter = :fiber_job` (Rails) or
  # `ActiveJob::Base.queue_adapter = :fiber_job`.
  #
  # Each ActiveJob job travels as one FiberJob job of class
  # FiberJob::ActiveJob::Wrapper whose single argument is the job's serialized data,
  # on the ActiveJob queue's name. ActiveJob owns retries (`retry_on`), so the wrapper
  # never retries itself: an error that ActiveJob lets through sends the job to the
  # dead set, where it can be retried by hand. Ids map both ways: the ActiveJob job's
  # `provider_job_id` is the FiberJob jid, and the payload's "wrapped_job_id" (and its
  # argument's "job_id") is the ActiveJob id.
  module ActiveJob
    class Wrapper < FiberJob::Job
      class << self
        # Seconds an ActiveJob job may run (FiberJob's default, 300; 0 for no limit).
        attr_accessor :timeout
      end
      self.timeout = FiberJob::Job::DEFAULT_TIMEOUT

      def initialize
        super
        @max_retries = 0
        @timeout = self.class.timeout
      end

      # A copy with the id: `job_data` is also the job's args for instrumentation and
      # middleware, which see them as enqueued.
      def perform(job_data)
        ::ActiveJob::Base.execute(job_data.merge("provider_job_id" => jid))
      end
    end

    # `fiber_job_options` on an ActiveJob class: FiberJob's flow control for its jobs,
    # with the same meaning as the Job class macros. Key lambdas and `unique_by` get
    # the job's arguments.
    #
    #   class ChargeJob < ApplicationJob
    #     fiber_job_options limits_concurrency: { to: 2, key: ->(account_id, *) { account_id } },
    #                       throttle: { limit: 100, per: 60 }, unique_for: 3600, expires_in: 600
    #   end
    #
    # A retry that ActiveJob's `retry_on` enqueues is not held back by the unique lock
    # of the run that failed (that run still holds it while it enqueues the retry).
    module Options
      KEYS = %i[unique_for unique_until unique_by limits_concurrency throttle expires_in].freeze

      def fiber_job_options(**options)
        unknown = options.keys - KEYS
        raise ArgumentError, "#{name}.fiber_job_options takes #{KEYS.join(", ")}; got #{unknown.inspect}" unless unknown.empty?

        @fiber_job_options = checked_fiber_job_options(options)
      end

      # @api private
      def fiber_job_settings
        return @fiber_job_options if instance_variable_defined?(:@fiber_job_options)

        superclass.respond_to?(:fiber_job_settings) ? superclass.fiber_job_settings : {}
      end

      private

      def checked_fiber_job_options(options)
        checked = {}
        checked[:expires_in] = Internal::JobSettings.positive_seconds!("#{name} expires_in:", options[:expires_in]) if options[:expires_in]
        if options[:unique_for]
          checked[:unique] = [Internal::JobSettings.positive_seconds!("#{name} unique_for:", options[:unique_for]),
                              (options[:unique_until] || :success).to_s, options[:unique_by]]
        end
        checked[:concurrency] = Internal::Limits.concurrency!(name, options[:limits_concurrency]) if options[:limits_concurrency]
        checked[:throttle] = Internal::Limits.throttle!(name, options[:throttle]) if options[:throttle]
        checked
      end
    end

    # The payload fields of one ActiveJob job's `fiber_job_options`, due at `due`.
    # @api private
    def self.flow_fields(job, due)
      settings = job.class.respond_to?(:fiber_job_settings) ? job.class.fiber_job_settings : {}
      return {} if settings.empty?

      args = job.arguments
      fields = {}
      fields["expires_at"] = due + settings[:expires_in] if settings[:expires_in]
      if (seconds, till, by = settings[:unique]) && job.executions.to_i.zero?
        key = by ? by.call(*args) : ::ActiveJob::Arguments.serialize(args)
        fields.merge!("unique_key" => Internal::JobSettings.lock_digest(job.class.name, job.queue_name, key), "unique_for" => seconds,
                      "unique_until" => till)
      end
      fields.merge(Internal::Limits.fields(job.class, settings.slice(:concurrency, :throttle), args))
    end
  end
end

::ActiveJob::Base.extend(FiberJob::ActiveJob::Options)

# Written inside `module FiberJob` so that the adapter reaches the gem's private
# `Internal`; the class is ActiveJob::QueueAdapters::FiberJobAdapter.
module FiberJob
  module ::ActiveJob::QueueAdapters
    # The adapter ActiveJob finds for `queue_adapter = :fiber_job`. It follows the
    # adapter contract of the ActiveJob it runs under: AbstractAdapter's subclass where
    # Rails has one (7.2+), with `enqueue_all` (`ActiveJob.perform_all_later`, 7.1+),
    # `stopping?` (Active Job Continuations, 8.1+) and `enqueue_after_transaction_commit?`
    # (7.2's `:default` setting) answered.
    class FiberJobAdapter < (defined?(AbstractAdapter) ? AbstractAdapter : Object)
      # @return [String, nil] the jid; nil for a duplicate of a pending unique job
      def enqueue(job)
        job.provider_job_id = Internal::Enqueue.push(FiberJob::ActiveJob::Wrapper, [job.serialize],
                                                      queue: job.queue_name.to_s, extra: extra(job, Time.now.to_f))
      end

      def enqueue_at(job, timestamp)
        job.provider_job_id = Internal::Enqueue.schedule(FiberJob::ActiveJob::Wrapper, timestamp.to_f, [job.serialize],
                                                          queue: job.queue_name.to_s,
                                                          extra: extra(job, [timestamp.to_f, Time.now.to_f].max))
      end

      # `ActiveJob.perform_all_later`: every job through the bulk path, a round trip
      # per queue for those due now and one per queue for scheduled ones. Sets each
      # job's `provider_job_id` and `successfully_enqueued`; a job whose write failed
      # (Redis down, full) gets the error as its `enqueue_error`. A duplicate of a
      # pending unique job (`fiber_job_options unique_for:`) is not enqueued and not
      # an error, as with `perform_later`: its `provider_job_id` stays nil and it is
      # not counted.
      # @return [Integer] how many jobs were enqueued
      def enqueue_all(jobs)
        now = Time.now.to_f
        entries = jobs.map do |job|
          at = job.scheduled_at&.to_f
          [[job.serialize], job.queue_name.to_s, extra(job, [at || now, now].max), at]
        end
        results = Internal::Enqueue.push_many(FiberJob::ActiveJob::Wrapper, entries)
        jobs.zip(results).count do |job, (jid, error)|
          job.provider_job_id = jid
          job.successfully_enqueued = error.nil? if job.respond_to?(:successfully_enqueued=)
          job.enqueue_error = enqueue_error(error) if error && job.respond_to?(:enqueue_error=)
          jid
        end
      end

      # Whether the worker running jobs in this process is stopping (TERM, a deploy):
      # an ActiveJob::Continuable job then stops at its next step and is enqueued
      # again to resume there. False outside a worker.
      def stopping?(_job = nil)
        native = FiberJob::Worker.native
        native ? native._stopping? : false
      end

      # Rails 7.2's `enqueue_after_transaction_commit = :default` asks the adapter:
      # a FiberJob enqueue is not part of the app's database transaction, so it waits
      # for the commit (and is dropped on rollback).
      def enqueue_after_transaction_commit?
        true
      end

      private

      def enqueue_error(error)
        ::ActiveJob::EnqueueError.new("#{error.class}: #{error.message}").tap { |e| e.set_backtrace(error.backtrace) }
      end

      # Shown by dashboards; the priority is kept, not used for ordering (FiberJob
      # queues are FIFO; use separate queues for urgent work). Then the fields of the
      # class's `fiber_job_options`.
      def extra(job, due)
        { "wrapped" => job.class.name, "wrapped_job_id" => job.job_id, "priority" => job.priority }
          .merge(FiberJob::ActiveJob.flow_fields(job, due))
      end
    end
  end
end
