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

        Internal::Native.cron_next(expression, FiberJob.config.cron_time_zone == :utc, Time.now.to_f)
        @cron_expression = expression
        list = CronJob.instance_variable_get(:@cron_jobs)
        list << self unless list.include?(self)
        expression
      end

      # The next time the job runs (a Time), from its expression.
      def next_run(after = Time.now)
        Time.at(Internal::Native.cron_next(cron, FiberJob.config.cron_time_zone == :utc, after.to_f)) if cron
      end

      # Every CronJob subclass that has an expression, in definition order.
      def all
        CronJob.instance_variable_get(:@cron_jobs).select(&:name)
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
end
