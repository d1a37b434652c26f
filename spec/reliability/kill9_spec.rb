# frozen_string_literal: true

RSpec.describe "a worker killed with kill -9 mid-run" do
  JOBS = <<~RUBY
    class ShortJob < FiberJob::Job
      def perform(i)
        sleep 0.002
        Record.add(i)
      end
    end
  RUBY

  def enqueue_short_jobs(count)
    payloads = Array.new(count) do |i|
      JSON.generate("class" => "ShortJob", "args" => [i], "jid" => format("k9%022d", i), "queue" => "default",
                    "retry_count" => 0)
    end
    payloads.each_slice(1000) { |slice| raw_push("default", slice) }
  end

  it "loses nothing: another worker recovers its jobs within seconds and completes every one" do
    enqueue_short_jobs(2000)
    first = start_workers(1, JOBS, config: "c.queue_concurrency = { default: 10 }").first
    wait_for(timeout: 30) { redis.llen("fiber_job:queue:{record}") >= 400 }
    victim = redis.smembers("fiber_job:processes").first
    Process.kill("KILL", first[0])
    killed_at = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    wait_process(first[0])
    in_flight = held_payloads("default", victim).size

    second = start_workers(1, JOBS, config: "c.queue_concurrency = { default: 10 }")
    wait_for(timeout: 30, message: "recovery") { held_payloads("default", victim).empty? }
    recovered_after = Process.clock_gettime(Process::CLOCK_MONOTONIC) - killed_at
    wait_for(timeout: 60, message: "all jobs") { records.uniq.size == 2000 }
    expect(stop_workers(second).map(&:exitstatus)).to eq([0])

    ran = records.map(&:to_i)
    duplicates = ran.size - ran.uniq.size
    puts format("\n    kill -9 with %d jobs in flight: recovered %.1fs after the kill; 2000/2000 done, %d lost, %d duplicate(s)",
                in_flight, recovered_after, 2000 - ran.uniq.size, duplicates)
    expect(ran.uniq.sort).to eq((0...2000).to_a)
    expect(duplicates).to be <= in_flight
    expect(recovered_after).to be < 15
    expect(redis.smembers("fiber_job:processes")).not_to include(victim)
  end

  it "sends a poison pill that kills its worker to the dead set after three deaths" do
    jobs = <<~RUBY
      class PoisonJob < FiberJob::Job
        def perform = (Record.add("poison"); exit!(1))
      end
      class FineJob < FiberJob::Job
        def perform(i) = Record.add("fine-\#{i}")
      end
    RUBY
    raw_push("default", JSON.generate("class" => "PoisonJob", "args" => [], "jid" => "poison1",
                                                         "queue" => "default"))
    deaths = 0
    6.times do
      break if redis.zcard("fiber_job:dead:{default}").positive?

      pid, = start_workers(1, jobs).first
      begin
        status = wait_process(pid, timeout: 20)
        deaths += 1 if status.exitstatus == 1
      rescue Timeout::Error
        # The job was buried instead of run: this worker lives. Stop it.
        Process.kill("TERM", pid)
        wait_process(pid)
      end
    end
    dead = FiberJob::Queue.dead_jobs
    puts "\n    poison pill: ran #{records.count("poison")} times, killed #{deaths} workers, then went to the dead set"
    expect(dead.size).to eq(1)
    expect(dead.first).to include("jid" => "poison1", "error_class" => "FiberJob::WorkerLost")
    expect(dead.first["error"]).to match(/died 3 times while running it/)
    expect(records.count("poison")).to eq(3)
  end
end
