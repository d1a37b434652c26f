# frozen_string_literal: true

module FiberJob
  # Read access to queues and failures, for people and dashboards.
  module Queue
    module_function

    # @return [Hash] size: ready jobs, scheduled: scheduled jobs and pending retries,
    #   processing: jobs workers have taken and not yet finished
    def stats(queue)
      size, scheduled, processing = FiberJob.client._stats(queue.to_s)
      { size: size, scheduled: scheduled, processing: processing }
    end

    # Failure records, newest first: 'class', 'args', 'jid', 'queue', 'error',
    # 'error_class', 'error_message', 'backtrace', 'failed_at', 'retry_count'.
    # @return [Array<Hash>]
    def failed_jobs(limit: 100)
      FiberJob.client._failed(0, limit - 1).map { |json| JSON.parse(json) }
    end

    # Jobs that will not run again (retries exhausted, or unrunnable), newest first;
    # the failure fields plus 'died_at'. The 10,000 newest of the last 180 days are kept.
    # @return [Array<Hash>]
    def dead_jobs(limit: 100)
      FiberJob.client._dead(0, limit - 1).map { |json| JSON.parse(json) }
    end

    # Puts a dead job back on its queue with its retry count reset.
    # @return [Boolean] whether a job with that jid was found and moved
    def retry_dead(jid)
      FiberJob.client._retry_dead(jid_string(jid)).positive?
    end

    # Deletes a dead job. @return [Boolean] whether it was there
    def delete_dead(jid)
      FiberJob.client._delete_dead(jid_string(jid)).positive?
    end

    # Puts every dead job back on its queue. @return [Integer] how many moved
    def retry_all_dead
      FiberJob.client._retry_dead(nil)
    end

    # Empties the dead set. @return [Integer] how many were deleted
    def clear_dead_jobs
      FiberJob.client._delete_dead(nil)
    end

    # Registered cron jobs with their expression, queue, next run and last run.
    # @return [Array<Hash>]
    def cron_jobs
      last = FiberJob.client._cron_last.to_h
      CronJob.all.map do |job|
        tick = last[job.name]
        { class: job.name, cron: job.cron, queue: job.queue_name, next_run: job.next_run,
          last_run: tick && Time.at(tick) }
      end
    end

    def jid_string(jid)
      raise ArgumentError, "a jid is a String, got #{jid.inspect}" unless jid.is_a?(String) && !jid.empty?

      jid
    end
  end
end
