# frozen_string_literal: true

module FiberJob
  # A job that runs on a schedule:
  #
  #   class DailyReportJob < FiberJob::CronJob
  #     cron '0 9 * * *'  # every day at 9 AM
  #     def execute_cron_job = Report.generate_daily
  #   end
  #
  # Expressions: crontab's 5 fields (minute hour day-of-month month day-of-week, with
  # ranges, lists, steps and names), or 6 with seconds first. A bad one raises
  # FiberJob::InvalidCronError at the `cron` line. Every worker that has the class
  # loaded ticks it; each tick runs once across all of them. A failed run is recorded
  # like any failure and is not retried (the next tick is the retry), unless
  # `@max_retries` is set.
  class CronJob < Job
    @cron_jobs = []

    class << self
      # Sets (or, without an argument, returns) the cron expression.
      # @raise [FiberJob::InvalidCronError]
      def cron(expression = nil)
        return @cron_expression if expression.nil?

        unless expression.is_a?(String)
          raise InvalidCronError, "#{name}.cron takes a String like '0 9 * * *', got #{expression.inspect}"
        end

        Native.cron_next(expression, FiberJob.config.cron_time_zone == :utc, Time.now.to_f)
        @cron_expression = expression
        CronJob.register_class(self)
        expression
      end

      # The next time the job runs (a Time), from its expression.
      def next_run(after = Time.now)
        Time.at(Native.cron_next(cron, FiberJob.config.cron_time_zone == :utc, after.to_f)) if cron
      end

      # Every CronJob subclass that has an expression, in definition order.
      def all
        CronJob.instance_variable_get(:@cron_jobs).select(&:name)
      end

      # Fields every tick's payload carries: the class's limits per key (its key
      # lambdas get no arguments) and its `expires_in`, which the engine counts from
      # the tick. (Each tick runs once across processes; `unique_for` adds nothing.)
      # @api private
      def tick_fields
        (limit_fields([]) || {}).merge(expiry ? { "expires_in" => expiry } : {})
      end

      # @api private
      def register_class(klass)
        list = CronJob.instance_variable_get(:@cron_jobs)
        list << klass unless list.include?(klass)
      end
    end

    def initialize
      super
      @max_retries = 0
    end

    # The work of one tick.
    def execute_cron_job
      raise NotImplementedError, "#{self.class} must define #execute_cron_job"
    end

    def perform(*)
      execute_cron_job
    end
  end

  class << self
    # Records every loaded cron job in Redis (for dashboards) and returns them.
    # Idempotent; workers call it when they start.
    # @return [Array<Class>]
    def register_cron_jobs
      jobs = CronJob.all
      entries = jobs.map do |job|
        [job.name, JSON.generate("class" => job.name, "cron" => job.cron, "queue" => job.queue_name,
                                 "time_zone" => config.cron_time_zone.to_s)]
      end
      admin._register_cron(entries)
      jobs
    end
  end
end
