# frozen_string_literal: true

class FlakyJob < FiberJob::Job
  def initialize
    super
    @max_retries = 2
  end

  def retry_delay(attempt)
    Ran.record(:delay, attempt)
    0.1 * attempt
  end

  def perform(tag)
    Ran.record(:try, tag, retry_count, Time.now.to_f)
    raise "attempt #{retry_count + 1} failed"
  end
end

class RecoversJob < FiberJob::Job
  def retry_delay(_attempt) = 0.05

  def perform
    Ran.record(:try, retry_count)
    raise "first try fails" if retry_count.zero?
  end
end

class CriticalJob < FiberJob::Job
  def retry_delay(_attempt) = 0.3
  def priority_retry? = true

  def perform(tag)
    Ran.record(tag, retry_count)
    raise "fails once" if retry_count.zero?
  end
end

class OrdinaryJob < CriticalJob
  def priority_retry? = false
end

class QueuedJob < FiberJob::Job
  def perform(i)
    sleep 0.03
    Ran.record(:queued, i)
  end
end

class RacyTimeoutJob < FiberJob::Job
  def initialize
    super
    @timeout = 0.02
    @max_retries = 0
  end

  def perform(i)
    sleep 0.02 # ends right at its deadline: the timeout races the finish
    Ran.record(:done, i)
  end
end

class TimeoutJob < FiberJob::Job
  def initialize
    super
    @timeout = 0.3
    @max_retries = 0
  end

  def perform
    sleep 5
    Ran.record(:not_interrupted)
  end
end

RSpec.describe "retries, the dead set and timeouts" do
  before { Ran.reset! }

  it "retries with retry_delay(attempt), counts attempts, then moves the job to the dead set" do
    jid = FlakyJob.perform_async("x")
    with_worker { wait_for(timeout: 10) { FiberJob::Queue.dead_jobs.any? } }
    tries = Ran.calls.select { |c| c.first == :try }
    expect(tries.map { |t| t[2] }).to eq([0, 1, 2])
    expect(Ran.calls.select { |c| c.first == :delay }.map(&:last)).to eq([1, 2])
    gaps = tries.each_cons(2).map { |a, b| b[3] - a[3] }
    expect(gaps[0]).to be >= 0.1
    expect(gaps[1]).to be >= 0.2
    expect(FiberJob::Queue.failed_jobs.map { |f| [f["jid"], f["retry_count"]] }).to eq([[jid, 3], [jid, 2], [jid, 1]])
    dead = FiberJob::Queue.dead_jobs
    expect(dead.size).to eq(1)
    expect(dead.first).to include("jid" => jid, "class" => "FlakyJob", "args" => ["x"], "retry_count" => 3,
                                  "error" => "RuntimeError: attempt 3 failed")
    expect(FiberJob::Queue.stats(:default)).to eq(size: 0, scheduled: 0, processing: 0)
  end

  it "runs a job that succeeds on retry once more and no further" do
    RecoversJob.perform_async
    with_worker { wait_for { Ran.calls.size == 2 && FiberJob::Queue.stats(:default)[:scheduled].zero? } }
    expect(Ran.calls).to eq([[:try, 0], [:try, 1]])
    expect(FiberJob::Queue.dead_jobs).to be_empty
  end

  it "puts a due priority retry at the front of its queue, an ordinary one at the back" do
    FiberJob.config.queue_concurrency = { default: 1 }
    CriticalJob.perform_async("critical")
    OrdinaryJob.perform_async("ordinary")
    30.times { |i| QueuedJob.perform_async(i) }
    with_worker { wait_for(timeout: 20) { Ran.calls.size == 34 } }
    order = Ran.calls.map(&:first)
    critical_retry = Ran.calls.index(["critical", 1])
    ordinary_retry = Ran.calls.index(["ordinary", 1])
    expect(critical_retry).to be < order.rindex(:queued) # ran before the backlog was done
    expect(ordinary_retry).to eq(33) # waited behind every queued job
  end

  %i[fiber thread].each do |executor|
    it "interrupts a job past its @timeout with FiberJob::TimeoutError (#{executor} executor)" do
      FiberJob.config.executor = executor
      TimeoutJob.perform_async
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      with_worker { wait_for(timeout: 10) { FiberJob::Queue.dead_jobs.any? } }
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 3
      expect(FiberJob::Queue.dead_jobs.first["error_class"]).to eq("FiberJob::TimeoutError")
      expect(FiberJob::Queue.failed_jobs.first["error"]).to include("timeout of 0.3s")
      expect(Ran.calls).to be_empty
    end
  end

  %i[fiber thread].each do |executor|
    it "settles every job whose timeout races its finish, and keeps working (#{executor} executor)" do
      FiberJob.config.executor = executor
      FiberJob.config.queue_concurrency = { default: 20 }
      200.times { |i| RacyTimeoutJob.perform_async(i) }
      with_worker do
        wait_for(timeout: 30, message: "every job settled") do
          done = Ran.calls.count { |c| c.first == :done }
          dead = redis.zcard("fiber_job:dead:{default}")
          done + dead >= 200 && FiberJob::Queue.metrics(["default"])["default"][:held].zero?
        end
        QueuedJob.perform_async(999)
        wait_for { Ran.calls.include?([:queued, 999]) }
      end
      done = Ran.calls.count { |c| c.first == :done }
      dead = FiberJob::Queue.dead_jobs(limit: 300)
      expect(dead.map { |d| d["error_class"] }.uniq - ["FiberJob::TimeoutError"]).to be_empty
      expect(done + dead.size).to be >= 200
      expect(FiberJob::Queue.stats(:default)).to eq(size: 0, scheduled: 0, processing: 0)
    end
  end

  describe "dead set operations" do
    def bury(n)
      redis.sadd?("fiber_job:queues", "default") # known queues are where the dead sets are read
      n.times.map do |i|
        jid = "dead#{i}"
        redis.zadd("fiber_job:dead:{default}", Time.now.to_f + i,
                   JSON.generate("class" => "QueuedJob", "args" => [i], "jid" => jid, "queue" => "default",
                                 "retry_count" => 4, "error" => "RuntimeError: x", "died_at" => Time.now.to_f))
        jid
      end
    end

    it "retries one job by jid: back to its queue with its count reset" do
      jids = bury(3)
      expect(FiberJob::Queue.retry_dead(jids[1])).to be(true)
      expect(FiberJob::Queue.retry_dead(jids[1])).to be(false)
      expect(FiberJob::Queue.dead_jobs.map { |d| d["jid"] }).to eq([jids[2], jids[0]])
      job = JSON.parse(redis.lindex("fiber_job:queue:{default}", 0))
      expect(job).to include("jid" => jids[1], "retry_count" => 0, "args" => [1])
      expect(job).not_to include("error", "died_at")
      with_worker { wait_for { Ran.calls == [[:queued, 1]] } }
    end

    it "deletes one, retries all, clears all" do
      jids = bury(4)
      expect(FiberJob::Queue.delete_dead(jids[0])).to be(true)
      expect(FiberJob::Queue.delete_dead("nope")).to be(false)
      expect(FiberJob::Queue.retry_all_dead).to eq(3)
      expect(FiberJob::Queue.stats(:default)[:size]).to eq(3)
      bury(2)
      expect(FiberJob::Queue.clear_dead_jobs).to eq(2)
      expect(FiberJob::Queue.dead_jobs).to be_empty
    end

    it "caps the dead set and trims it by age" do
      redis.zadd("fiber_job:dead:{default}", Time.now.to_f - (200 * 86_400), JSON.generate("class" => "Old", "args" => [], "jid" => "old"))
      TimeoutJob.perform_async
      with_worker { wait_for(timeout: 10) { FiberJob::Queue.dead_jobs.any? { |d| d["class"] == "TimeoutJob" } } }
      expect(FiberJob::Queue.dead_jobs.map { |d| d["jid"] }).not_to include("old")
    end

    it "rejects a jid that is not a String" do
      expect { FiberJob::Queue.retry_dead(nil) }.to raise_error(ArgumentError, /jid is a String/)
    end
  end
end
