# frozen_string_literal: true

RSpec.describe "Redis restarting mid-run (AOF, appendfsync always)" do
  around do |example|
    @server = RedisServer.new(aof: true).start
    example.run
  ensure
    kill_spawned
    @server.cleanup
  end

  it "loses nothing, resumes within a second, and perform_async fails fast meanwhile" do
    FiberJob.configure do |c|
      c.redis_url = @server.url
      c.network_timeout = 1
    end
    jobs = <<~RUBY
      class SteadyJob < FiberJob::Job
        def perform(i) = (sleep 0.001; Record.add(i))
      end
    RUBY
    payloads = Array.new(3000) do |i|
      JSON.generate("class" => "SteadyJob", "args" => [i], "jid" => format("rr%022d", i), "queue" => "default")
    end
    payloads.each_slice(1000) { |s| raw_push("default", s) }
    workers = start_workers(1, jobs, config: "c.network_timeout = 1; c.queue_concurrency = { default: 10 }")
    wait_for(timeout: 30) { redis.llen("fiber_job:queue:{record}") >= 500 }

    @server.stop
    redis.close
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect { FiberJob::Queue.stats(:default) }.to raise_error(FiberJob::ConnectionError)
    expect { Class.new(FiberJob::Job) { def self.name = "OutageJob" }.perform_async(1) }
      .to raise_error(FiberJob::ConnectionError, /Redis/)
    raised_after = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    sleep 1
    @server.start
    back = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    before = redis.llen("fiber_job:queue:{record}")
    wait_for(timeout: 10, interval: 0.005) { redis.llen("fiber_job:queue:{record}") > before }
    resumed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - back
    begin
      wait_for(timeout: 60) { records.uniq.size == 3000 }
    rescue RuntimeError
      state = redis.keys("fiber_job:*").to_h { |k| [k, redis.type(k) == "list" ? redis.llen(k) : redis.type(k)] }
      raise "not all jobs ran: #{records.uniq.size}/3000; keys #{state.inspect}; worker log:\n#{File.read(workers.first[1])}"
    end
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0])

    ran = records.map(&:to_i)
    puts format("\n    Redis restart: perform_async raised ConnectionError in %.2fs; work resumed %.2fs after Redis was back; " \
                "3000/3000 done, %d lost, %d duplicate(s)", raised_after / 2, resumed, 3000 - ran.uniq.size, ran.size - ran.uniq.size)
    expect(ran.uniq.sort).to eq((0...3000).to_a)
    expect(raised_after).to be < 4 # two calls, each bounded by network_timeout 1
    expect(resumed).to be < 2
  end
end
