# frozen_string_literal: true

RSpec.describe "bad data in a queue" do
  it "buries every bad payload with its reason, runs every good one, and never dies" do
    jobs = <<~RUBY
      class GoodJob < FiberJob::Job
        def perform(i) = Record.add(i)
      end
    RUBY
    bad = {
      "not json" => "not json at all",
      "a JSON array" => "[1,2,3]",
      "no class" => JSON.generate("args" => [], "jid" => "b1"),
      "no args" => JSON.generate("class" => "GoodJob", "jid" => "b2"),
      "args not an array" => JSON.generate("class" => "GoodJob", "args" => { "a" => 1 }, "jid" => "b3"),
      "unknown class" => JSON.generate("class" => "NoSuchJob", "args" => [], "jid" => "b4"),
      "Kernel" => JSON.generate("class" => "Kernel", "args" => [], "jid" => "b5"),
      "File" => JSON.generate("class" => "File", "args" => ["/etc/passwd"], "jid" => "b6"),
      "Object" => JSON.generate("class" => "Object", "args" => [], "jid" => "b7"),
      "code as a name" => JSON.generate("class" => "system('touch /tmp/pwned')", "args" => [], "jid" => "b8")
    }
    good = Array.new(200) { |i| JSON.generate("class" => "GoodJob", "args" => [i], "jid" => "g#{i}", "queue" => "default") }
    mixed = good.each_slice(20).zip(bad.values).flat_map { |g, b| [*g, b] }
    raw_push("default", mixed.reverse)
    (pid, log), = start_workers(1, jobs)
    # A class this worker lacks is retried (a rolling deploy); the rest is buried.
    buried = bad.size - 1
    wait_for(timeout: 20) do
      records.size >= 200 && redis.zcard("fiber_job:dead:{default}") == buried && redis.zcard("fiber_job:retry:{default}") == 1
    end
    expect(Process.kill(0, pid)).to eq(1) # still alive
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)

    expect(records.map(&:to_i).sort).to eq((0...200).to_a)
    dead = FiberJob::Queue.dead_jobs(limit: 100)
    expect(dead.size).to eq(buried)
    expect(dead.map { |d| d["error"] }).to all(be_a(String).and(satisfy { |e| !e.empty? }))
    reasons = dead.map { |d| d["error"] }.join("\n")
    expect(reasons).to include("not valid JSON", "not a JSON object", "no 'class' field", "no 'args' field",
                               "'args' is not an array", '"Kernel" is not', '"File" is not', '"Object" is not',
                               "is not a Ruby constant name")
    retry_entry = JSON.parse(redis.zrange("fiber_job:retry:{default}", 0, -1).first)
    expect(retry_entry).to include("class" => "NoSuchJob", "retry_count" => 1, "error_class" => "FiberJob::UnknownJobError")
    expect(dead.find { |d| d["payload"] == "not json at all" }).not_to be_nil # kept verbatim
    expect(File.exist?("/tmp/pwned")).to be(false)
    expect(File.read(log)).to include("moved to the dead set")
  end
end

RSpec.describe "a payload that is not UTF-8" do
  it "goes to the dead set with its bytes kept exactly, and the jobs behind it run" do
    jobs = <<~RUBY
      class Utf8Job < FiberJob::Job
        def perform(i) = Record.add(i)
      end
    RUBY
    binary = "{\"class\":\"Utf8Job\",\"args\":[\"caf\xE9\"],\"jid\":\"bin1\"}".b
    good = Array.new(8) { |i| JSON.generate("class" => "Utf8Job", "args" => [i], "jid" => "u#{i}") }
    raw_push("default", [binary, *good].reverse) # the binary one is taken first
    workers = start_workers(1, jobs)
    wait_for(timeout: 15, message: "the jobs behind it") { records.size >= 8 }
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0])

    expect(records.map(&:to_i).sort).to eq((0...8).to_a)
    expect(held_keys).to be_empty
    dead = FiberJob::Queue.dead_jobs
    expect(dead.size).to eq(1)
    expect(dead.first["error"]).to include("not valid UTF-8")
    expect(dead.first["payload_base64"].unpack1("m0")).to eq(binary)

    # Retried by hand, the exact bytes go back to the queue.
    expect(FiberJob::Queue.retry_all_dead).to eq(1)
    expect(redis.lrange("fiber_job:queue:{default}", 0, -1).map(&:b)).to eq([binary])
  end
end

RSpec.describe "exceptions outside StandardError" do
  JOBS_RAISING = <<~RUBY
    class RaisesNotImplemented < FiberJob::Job
      def initialize = (super; @max_retries = 1)
      def retry_delay(_) = 0
      def perform(i) = raise(NotImplementedError, "not yet")
    end
    class RaisesLoadError < FiberJob::Job
      def initialize = (super; @max_retries = 1)
      def retry_delay(_) = 0
      def perform(i) = require("fiber_job_no_such_gem_\#{i}")
    end
    class OverflowsTheStack < FiberJob::Job
      def initialize = (super; @max_retries = 1)
      def retry_delay(_) = 0
      def perform(i) = deeper(0)
      def deeper(n) = deeper(n + 1) + 1
    end
    class NoPerformJob < FiberJob::Job
      def initialize = (super; @max_retries = 1)
      def retry_delay(_) = 0
    end
    class InnocentJob < FiberJob::Job
      def perform(i) = (sleep 0.01; Record.add(i))
    end
  RUBY

  %w[fiber thread].each do |executor|
    it "are the job's failure, retried then dead, and the #{executor} executor goes on" do
      bad = %w[RaisesNotImplemented RaisesLoadError OverflowsTheStack NoPerformJob FiberJob::CronJob]
      payloads = bad.map { |c| JSON.generate("class" => c, "args" => [1], "jid" => "bad-#{c}", "queue" => "default") }
      payloads += Array.new(60) { |i| JSON.generate("class" => "InnocentJob", "args" => [i], "jid" => "in#{i}", "queue" => "default") }
      raw_push("default", payloads.shuffle(random: Random.new(7)))
      workers = start_workers(1, JOBS_RAISING, config: "c.executor = :#{executor}; c.queue_concurrency = { default: 2 }")
      wait_for(timeout: 30, message: "every job done") { records.size >= 60 && redis.zcard("fiber_job:dead:{default}") >= bad.size }
      expect(Process.kill(0, workers[0][0])).to eq(1) # alive
      expect(stop_workers(workers).map(&:exitstatus)).to eq([0])

      expect(records.map(&:to_i).sort).to eq((0...60).to_a)
      dead = FiberJob::Queue.dead_jobs.to_h { |d| [d["class"], d] }
      expect(dead.keys).to match_array(bad)
      expect(dead["RaisesNotImplemented"]).to include("error_class" => "NotImplementedError", "retry_count" => 2)
      expect(dead["RaisesLoadError"]).to include("error_class" => "LoadError", "retry_count" => 2)
      expect(dead["OverflowsTheStack"]).to include("error_class" => "SystemStackError", "retry_count" => 2)
      expect(dead["NoPerformJob"]["error_message"]).to include("must define #perform")
      expect(dead["FiberJob::CronJob"]).to include("error_class" => "NotImplementedError", "retry_count" => 1)
      expect(dead.values.map { |d| d["error_class"] }).not_to include("FiberJob::WorkerLost")
    end
  end

  %w[fiber thread].each do |executor|
    it "counts a job that calls exit in every run as its failure in the #{executor} worker: retried, then dead, " \
       "while the worker goes on" do
      jobs = <<~RUBY
        class ExitsJob < FiberJob::Job
          def initialize = (super; @max_retries = 2)
          def retry_delay(_attempt) = 0.2
          def perform = (Record.add("exit \#{Process.pid}"); exit(3))
        end
        class SlowInnocentJob < FiberJob::Job
          def perform(i) = (sleep 0.3; Record.add(i))
        end
      RUBY
      raw_push("default", [JSON.generate("class" => "SlowInnocentJob", "args" => [1], "jid" => "s1"),
                           JSON.generate("class" => "ExitsJob", "args" => [], "jid" => "x1")])
      workers = start_workers(1, jobs, config: "c.executor = :#{executor}; c.queue_concurrency = { default: 2 }")
      pid = workers.first.first
      wait_for(timeout: 20, message: "the job in the dead set") { redis.zcard("fiber_job:dead:{default}") == 1 }
      raw_push("default", JSON.generate("class" => "SlowInnocentJob", "args" => [2], "jid" => "s2"))
      wait_for(timeout: 10, message: "jobs after it") { records.include?("2") }
      expect(records.grep(/\Aexit /)).to eq(["exit #{pid}"] * 3) # the run and two retries, in the one worker
      expect(records).to include("1", "2")
      expect(FiberJob::Queue.dead_jobs.first).to include("jid" => "x1", "error_class" => "SystemExit", "retry_count" => 3)
      expect(stop_workers(workers).map(&:exitstatus)).to eq([0])
      expect(held_keys).to be_empty
    end
  end
end

RSpec.describe "a rolling deploy" do
  it "retries a job whose class the worker lacks, so a worker with the class runs it" do
    old_code = "class OldJob < FiberJob::Job; def perform(i) = Record.add(\"old-\#{i}\"); end"
    new_code = "#{old_code}\nclass NewJob < FiberJob::Job; def perform(i) = Record.add(\"new-\#{i}\"); end"
    old = start_workers(1, old_code)
    raw_push("default", JSON.generate("class" => "NewJob", "args" => [7], "jid" => "nj1", "queue" => "default",
                                                           "retry_count" => 0))
    wait_for(timeout: 15, message: "the retry") { redis.zcard("fiber_job:retry:{default}") == 1 }
    entry, at = redis.zrange("fiber_job:retry:{default}", 0, -1, with_scores: true).first
    expect(JSON.parse(entry)).to include("retry_count" => 1, "error_class" => "FiberJob::UnknownJobError")
    expect(JSON.parse(entry)["error_message"]).to include("NewJob", "rolling deploy")
    expect(at).to be > Time.now.to_f + 5 # backoff, not a busy loop
    expect(redis.zcard("fiber_job:dead:{default}")).to eq(0)
    expect(stop_workers(old).map(&:exitstatus)).to eq([0])

    fresh = start_workers(1, new_code)
    expect(FiberJob::Queue.run_now(:retry, "default", "nj1")).to be(true) # as if the backoff had passed
    wait_for(timeout: 15, message: "the new worker ran it") { records.include?("new-7") }
    expect(stop_workers(fresh).map(&:exitstatus)).to eq([0])
    expect(redis.zcard("fiber_job:dead:{default}")).to eq(0)
  end
end
