# frozen_string_literal: true

RSpec.describe "graceful shutdown" do
  jobs = <<~RUBY
    class LongJob < FiberJob::Job
      def perform(i, seconds)
        Record.add("start-\#{i}")
        sleep(ENV["FAST"] ? 0 : seconds)
        Record.add("done-\#{i}")
      rescue FiberJob::Shutdown
        Record.add("shutdown-\#{i}")
        raise
      end
    end
  RUBY

  def enqueue_long(count, seconds)
    payloads = Array.new(count) do |i|
      JSON.generate("class" => "LongJob", "args" => [i, seconds], "jid" => "long#{i}", "queue" => "default")
    end
    raw_push("default", payloads)
  end

  %w[fiber thread].each do |executor|
    it "on TERM gives buffered jobs back at once, interrupts running ones after shutdown_timeout, exits 0 (#{executor})" do
      enqueue_long(14, 30)
      config = "c.executor = :#{executor}; c.shutdown_timeout = 1; c.queue_concurrency = { default: 4 }; c.prefetch = 6"
      (pid, log), = start_workers(1, jobs, config: config)
      wait_for(timeout: 15) { records.count { |r| r.start_with?("start-") } == 4 }
      wait_for { FiberJob::Queue.stats(:default)[:size] == 4 } # 4 running + 6 prefetched taken
      Process.kill("TERM", pid)
      termed = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      wait_for(timeout: 0.5, message: "prefetched jobs back at once") { FiberJob::Queue.stats(:default)[:size] == 10 }
      # The prefetched jobs went to the front: the next fetch takes long4, not long10.
      expect(JSON.parse(redis.lindex("fiber_job:queue:{default}", -1))["jid"]).to eq("long4")
      status = wait_process(pid, timeout: 15)
      took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - termed
      puts format("\n    TERM → exit in %.2fs with shutdown_timeout 1 (%s executor)", took, executor)
      expect(status.exitstatus).to eq(0), File.read(log)
      expect(took).to be < 4
      expect(FiberJob::Queue.stats(:default)).to eq(size: 14, scheduled: 0, processing: 0)
      expect(records.count { |r| r.start_with?("shutdown-") }).to eq(4) if executor == "thread"

      finisher = start_workers(1, "ENV['FAST'] = '1'\n#{jobs}", config: "c.queue_concurrency = { default: 4 }")
      wait_for(timeout: 20) { (0...14).all? { |i| records.include?("done-#{i}") } }
      stop_workers(finisher)
      expect(FiberJob::Queue.stats(:default)).to eq(size: 0, scheduled: 0, processing: 0)
    end
  end

  it "finishes running jobs within shutdown_timeout without interrupting them" do
    enqueue_long(2, 0.5)
    (pid, _log), = start_workers(1, jobs, config: "c.shutdown_timeout = 5")
    wait_for { records.count { |r| r.start_with?("start-") } == 2 }
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
    expect(records).to include("done-0", "done-1")
    expect(held_keys).to be_empty
  end

  it "goes on with its shutdown when woken or TERMed meanwhile (exit 0, every job acked, unregistered)" do
    server = RedisServer.new.start
    own = Redis.new(url: server.url)
    stopper = <<~RUBY
      class StopperJob < FiberJob::Job
        def perform
          Record.add("start")
          sleep 1
          $worker.stop # as an app stopping its embedded worker would
          # Something wakes the main thread while it waits for the shutdown (a library's
          # Thread#wakeup, a signal): the wait must go on, not give up.
          Thread.new { sleep 0.3; Thread.main.wakeup }
        end
      end
    RUBY
    push = 'FiberJob.const_get(:Internal).enqueue._push("default", [JSON.generate("class" => "StopperJob", "args" => [], "jid" => "s0")])'
    (pid, log), = start_workers(1, stopper, config: "c.redis_url = #{server.url.dump}; c.network_timeout = 5",
                                            worker: "(#{push}; $worker = FiberJob::Worker.new)")
    wait_for(message: "the job started") { own.llen("fiber_job:queue:{record}") == 1 }
    # Redis stops before the job ends: the shutdown then waits for it (the job's ack,
    # the sweep), and the wake-up and the TERM land there.
    server.pause
    sleep 1.5
    Process.kill("TERM", pid)
    sleep 0.5
    server.resume
    status = wait_process(pid, timeout: 20)
    expect(status.exitstatus).to eq(0), File.read(log)
    expect(File.read(log)).not_to include("interrupted")
    expect(own.get("fiber_job:stat:processed").to_i).to eq(1)
    expect(own.scard("fiber_job:processes")).to eq(0)
    expect(held_keys(client: own)).to be_empty
  ensure
    own&.close
    server&.cleanup
  end

  it "on TSTP stops fetching but lets running jobs finish" do
    enqueue_long(1, 0.5)
    (pid, _log), = start_workers(1, jobs)
    wait_for { records.include?("start-0") }
    Process.kill("TSTP", pid)
    sleep 0.2
    raw_push("default", JSON.generate("class" => "LongJob", "args" => [1, 0], "jid" => "late", "queue" => "default"))
    wait_for { records.include?("done-0") }
    sleep 1.5 # a fetching worker would have taken the new job by now
    expect(records).not_to include("start-1")
    expect(FiberJob::Queue.stats(:default)[:size]).to eq(1)
    expect(redis.hget(redis.keys("fiber_job:process:*").first, "quiet")).to eq("true")
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
  end
end
