# frozen_string_literal: true

class LateJob < FiberJob::Job
  def perform(at)
    Ran.record(((Time.now.to_f - at) * 1000).round(3))
  end
end

RSpec.describe "scheduling: perform_in and perform_at" do
  before { Ran.reset! }

  it "starts jobs milliseconds after their time, not seconds" do
    FiberJob.config.queue_concurrency = { default: 20 }
    base = Time.now.to_f + 1.0
    250.times do |i|
      at = base + (i * 0.008) # spread over 2 s
      LateJob.perform_at(at, at)
    end
    with_worker { wait_for(timeout: 20) { Ran.calls.size == 250 } }
    lateness = Ran.calls.flatten
    p50 = percentile(lateness, 50)
    p99 = percentile(lateness, 99)
    puts format("\n    perform_at lateness over %d jobs: p50 %.2f ms, p99 %.2f ms, max %.2f ms",
                lateness.size, p50, p99, lateness.max)
    expect(lateness.min).to be >= 0 # never early
    expect(p99).to be < 100 # a poll-based scheduler would be seconds late
  end

  it "wakes for a job scheduled sooner than the one it sleeps for" do
    LateJob.perform_in(3600, Time.now.to_f + 3600)
    with_worker do
      sleep 0.3 # the scheduler now sleeps towards the one-hour job
      at = Time.now.to_f + 0.2
      LateJob.perform_at(at, at)
      wait_for(timeout: 5) { Ran.calls.size == 1 }
    end
    expect(Ran.calls.flatten.first).to be < 100
  end

  it "promotes each scheduled job exactly once across three worker processes" do
    jobs = <<~RUBY
      class OnceJob < FiberJob::Job
        def perform(i) = Record.add(i)
      end
    RUBY
    workers = start_workers(3, jobs, config: "c.queue_concurrency = { default: 10 }")
    wait_for { redis.scard("fiber_job:processes") == 3 }
    at = Time.now.to_f + 1.5
    payloads = Array.new(600) do |i|
      JSON.generate("class" => "OnceJob", "args" => [i], "jid" => "j#{i}", "queue" => "default")
    end
    redis.zadd("fiber_job:schedule:{default}", payloads.map { |p| [at + rand * 0.5, p] })
    redis.publish("fiber_job:scheduled", "default")
    wait_for(timeout: 30) { redis.llen("fiber_job:queue:{record}") >= 600 && FiberJob::Queue.stats(:default)[:size].zero? }
    sleep 0.3 # a duplicate would show up by now
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0, 0])
    ran = records.map(&:to_i)
    expect(ran.size).to eq(600)
    expect(ran.uniq.size).to eq(600)
  end
end
