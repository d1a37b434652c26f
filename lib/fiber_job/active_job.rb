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

      def perform(job_data)
        ::ActiveJob::Base.execute(job_data.merge("provider_job_id" => jid))
      end
    end
  end
end

module ActiveJob
  module QueueAdapters
    # The adapter ActiveJob finds for `queue_adapter = :fiber_job`.
    class FiberJobAdapter
      def enqueue(job)
        job.provider_job_id = FiberJob::Client.push(FiberJob::ActiveJob::Wrapper, [job.serialize],
                                                    queue: job.queue_name.to_s, extra: extra(job))
      end

      def enqueue_at(job, timestamp)
        job.provider_job_id = FiberJob::Client.schedule(FiberJob::ActiveJob::Wrapper, timestamp.to_f, [job.serialize],
                                                        queue: job.queue_name.to_s, extra: extra(job))
      end

      private

      # Shown by dashboards; the priority is kept, not used for ordering (FiberJob
      # queues are FIFO; use separate queues for urgent work).
      def extra(job)
        { "wrapped" => job.class.name, "wrapped_job_id" => job.job_id, "priority" => job.priority }
      end
    end
  end
end
