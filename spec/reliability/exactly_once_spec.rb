# frozen_string_literal: true

RSpec.describe "three worker processes in normal operation" do
  it "run each of 10,000 jobs exactly once" do
    jobs = <<~RUBY
      class CountedJob < FiberJob::Job
        def perform(i) = Record.add(i)
      end
    RUBY
    payloads = Array.new(10_000) do |i|
      JSON.generate("class" => "CountedJob", "args" => [i], "jid" => format("x%023d", i), "queue" => "default")
    end
    workers = start_workers(3, jobs, config: "c.queue_concurrency = { default: 10 }")
    wait_for { redis.scard("fiber_job:processes") == 3 }
    payloads.each_slice(1000) { |s| raw_push("default", s) }
    wait_for(timeout: 120) { redis.llen("fiber_job:queue:{record}") >= 10_000 && FiberJob::Queue.metrics(["default"])["default"][:held].zero? }
    sleep 0.5
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0, 0])
    ran = records.map(&:to_i)
    puts "\n    3 workers, 10,000 jobs: #{ran.uniq.size} ran, #{ran.size - ran.uniq.size} duplicates, #{10_000 - ran.uniq.size} missing"
    expect(ran.size).to eq(10_000)
    expect(ran.uniq.size).to eq(10_000)
    expect(redis.get("fiber_job:stat:processed").to_i).to eq(10_000)
  end
end
