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

  it "gives each tick the class's limits and deadline: a slow tick never overlaps the next (limits_concurrency)" do
    stub_const("SlowTickJob", Class.new(FiberJob::CronJob) do
      cron "* * * * * *"
      limits_concurrency to: 1
      expires_in 30
      def execute_cron_job
        Ran.record(:start, Time.now.to_f)
        sleep 1.5
        Ran.record(:finish, Time.now.to_f)
      end
    end)
    Ran.reset!
    with_worker(concurrency: 5) do
      wait_for(timeout: 10) { Ran.calls.count { |e, _| e == :finish } >= 3 }
      # ticks come every second, runs take 1.5 s: later ticks wait in Redis for the slot
      waiting = JSON.parse(redis.lindex("fiber_job:cwait:{default}:SlowTickJob", 0))
      expect(waiting["concurrency"]).to include("key" => "SlowTickJob", "to" => 1)
      expect(waiting["expires_at"] - waiting["cron_tick"]).to eq(30)
    end
    events = Ran.calls.sort_by(&:last)
    expect(events.each_cons(2).none? { |(a, _), (b, _)| a == :start && b == :start }).to be(true) # one at a time
  ensure # a cron class stays registered: later in-process workers must not tick it
    FiberJob::CronJob.instance_variable_get(:@cron_jobs).delete(SlowTickJob) if defined?(SlowTickJob)
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
