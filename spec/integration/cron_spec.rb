# frozen_string_literal: true

RSpec.describe "cron jobs" do
  it "raises InvalidCronError with the expression and the reason at the cron line" do
    expect do
      Class.new(FiberJob::CronJob) { cron "0 25 * * *" }
    end.to raise_error(FiberJob::InvalidCronError, /invalid cron expression "0 25 \* \* \*": .*/)
    expect do
      Class.new(FiberJob::CronJob) { cron "* * *" }
    end.to raise_error(FiberJob::InvalidCronError, /expected 5 fields/)
    expect do
      Class.new(FiberJob::CronJob) { cron "0 9 * * funday" }
    end.to raise_error(FiberJob::InvalidCronError, /"funday" is not a day of the week/)
  end

  it "registers cron jobs idempotently and reports their next run" do
    stub_const("DailyReportJob", Class.new(FiberJob::CronJob) do
      cron "0 9 * * *"
      def execute_cron_job = nil
    end)
    2.times { FiberJob.register_cron_jobs }
    entry = JSON.parse(redis.hget("fiber_job:cron", "DailyReportJob"))
    expect(entry).to include("cron" => "0 9 * * *", "queue" => "default")
    next_run = DailyReportJob.next_run
    expect([next_run.hour, next_run.min, next_run.sec]).to eq([9, 0, 0])
    expect(next_run).to be > Time.now
    expect(next_run).to be <= Time.now + 86_400
  end

  it "runs each tick exactly once across three worker processes, and a failing tick does not stop the next" do
    jobs = <<~RUBY
      class EverySecondJob < FiberJob::CronJob
        cron "* * * * * *"
        def execute_cron_job
          Record.add(Time.now.to_i)
          raise "every third tick fails" if (Time.now.to_i % 3).zero?
        end
      end
    RUBY
    workers = start_workers(3, jobs)
    wait_for { redis.scard("fiber_job:processes") == 3 }
    sleep 12
    statuses = stop_workers(workers)
    expect(statuses.map(&:exitstatus)).to eq([0, 0, 0])
    seconds = records.map(&:to_i)
    puts "\n    cron ticks seen in 12 s with 3 workers: #{seconds.size} runs, #{seconds.uniq.size} distinct seconds"
    expect(seconds.size).to be >= 10
    expect(seconds.uniq.size).to eq(seconds.size) # no tick ran twice
    expect(seconds.max - seconds.min + 1).to eq(seconds.size) # no tick was skipped
    expect(FiberJob::Queue.failed_jobs.map { |f| f["class"] }.uniq).to eq(["EverySecondJob"])
    expect(redis.hget("fiber_job:cron:last:{default}", "EverySecondJob").to_i).to be >= seconds.max
  end
end
