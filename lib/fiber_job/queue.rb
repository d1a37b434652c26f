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
  end
end
