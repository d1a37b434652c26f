# frozen_string_literal: true

class ProcOkJob < FiberJob::Job
  def perform(*args) = Ran.record(*args)
end

class ProcFailJob < FiberJob::Job
  def initialize = (super; @max_retries = 1)
  def perform(*) = raise(ArgumentError, "bad input")
end

class ProcHookJob < ProcFailJob
  def retry_delay(_) = raise(NotImplementedError, "a broken hook")
end

class ProcPriorityJob < ProcFailJob
  def priority_retry? = true
end

class ProcInterruptedJob < FiberJob::Job
  def perform = raise(FiberJob::Shutdown, "stopping")
end

class ProcLoadErrorJob < FiberJob::Job
  def perform = require("fiber_job_spec_no_such_file")
end

class ProcMessageJob < FiberJob::Job
  def initialize = (super; @max_retries = 0)

  def perform
    error = RuntimeError.new("x")
    def error.message = raise("message is broken")
    raise error
  end
end

# The Processor against a real engine: what it reports for each kind of job, read back
# from Redis.
# A watchdog that never stops a job.
module NoDeadlines
  def self.guard(_slot, _deadline) = yield
end

RSpec.describe FiberJob.const_get(:Internal)::Processor do
  before { Ran.reset! }

  let(:processor) do
    ->(_native) { described_class.new(Logger.new(File::NULL), timeout: NoDeadlines) }
  end

  def run_one(native, &check)
    job = take_one(native)
    processor.call(native).run(job)
    wait_for(message: "the outcome in Redis", &check)
  end

  def retries = redis.zrange("fiber_job:retry:{default}", 0, -1).map { |j| JSON.parse(j) }
  def dead = redis.zrange("fiber_job:dead:{default}", 0, -1).map { |j| JSON.parse(j) }

  it "acks a job that succeeds, with exactly its arguments" do
    queue_raw("ProcOkJob", [1, "two", { "x" => [nil] }])
    with_native_worker do |native|
      run_one(native) { redis.get("fiber_job:stat:processed") == "1" }
    end
    expect(Ran.all).to eq([[1, "two", { "x" => [nil] }]])
    expect(redis.llen("fiber_job:queue:{default}")).to eq(0)
  end

  it "retries a failure within max_retries, then buries it with its error" do
    queue_raw("ProcFailJob", [1])
    with_native_worker do |native|
      run_one(native) { retries.size == 1 }
      expect(retries.first).to include("retry_count" => 1, "error_class" => "ArgumentError", "error_message" => "bad input")
      queue_raw("ProcFailJob", [2], retry_count: 1)
      run_one(native) { dead.size == 1 }
    end
    expect(dead.first).to include("retry_count" => 2, "error" => "ArgumentError: bad input")
    expect(FiberJob::Queue.failed_jobs.size).to eq(2)
  end

  it "falls back to the default backoff when retry_delay raises, and keeps priority retries" do
    queue_raw("ProcHookJob")
    queue_raw("ProcPriorityJob")
    with_native_worker do |native|
      run_one(native) { retries.size == 1 }
      run_one(native) { retries.size == 2 }
    end
    expect(retries.map { |r| r["class"] }).to contain_exactly("ProcHookJob", "ProcPriorityJob")
    expect(retries.find { |r| r["class"] == "ProcPriorityJob" }["retry_priority"]).to be(true)
  end

  it "treats a LoadError as the job's failure, and survives an exception whose message raises" do
    queue_raw("ProcLoadErrorJob")
    queue_raw("ProcMessageJob")
    with_native_worker do |native|
      run_one(native) { retries.size == 1 }
      run_one(native) { dead.size == 1 }
    end
    expect(retries.first["error_class"]).to eq("LoadError")
    expect(dead.first["error_message"]).to include("#message raised")
  end

  it "gives an interrupted job back to the front of its queue and lets the interruption through" do
    queue_raw("ProcInterruptedJob")
    with_native_worker do |native|
      job = take_one(native)
      expect { processor.call(native).run(job) }.to raise_error(FiberJob::Shutdown)
      native._stop # else the engine fetches it again at once
      wait_for { redis.llen("fiber_job:queue:{default}") == 1 }
    end
    expect(retries + dead).to be_empty
  end

  it "retries a class this process lacks, and buries a name that is no job class" do
    queue_raw("ProcNotDefinedJob")
    queue_raw("Kernel")
    queue_raw("not a constant")
    with_native_worker do |native|
      run_one(native) { retries.size == 1 }
      run_one(native) { dead.size == 1 }
      run_one(native) { dead.size == 2 }
    end
    expect(retries.first).to include("class" => "ProcNotDefinedJob", "error_class" => "FiberJob::UnknownJobError")
    expect(dead.map { |d| d["error_message"] }).to contain_exactly(/"Kernel" is not a FiberJob::Job subclass/, /not a Ruby constant name/)
  end

  it "hands every job of a class and queue the same frozen names, and each its own jid and arguments" do
    3.times { |i| queue_raw("ProcOkJob", [i]) }
    # More classes than the worker keeps names for: those past the cap get Strings of their own.
    300.times { |i| queue_raw("ProcNameJob#{i}") }
    with_native_worker(limit: 400) do |native|
      jobs = wait_for(message: "303 jobs to take") { (@taken ||= []).concat(native._take(400)).size == 303 && @taken }
      mine = jobs.select { |j| j.class_name == "ProcOkJob" }
      expect(mine.map(&:class_name).map(&:object_id).uniq.size).to eq(1)
      expect(jobs.map(&:queue).map(&:object_id).uniq.size).to eq(1)
      expect(jobs.map(&:class_name) + jobs.map(&:queue)).to all(be_frozen)
      expect(mine.map(&:args)).to contain_exactly([0], [1], [2])
      expect(mine.map(&:jid).uniq.size).to eq(3)
      names = jobs.map(&:class_name)
      expect(names.uniq.size).to eq(301)
      expect(names.map(&:object_id).uniq.size).to eq(301) # one String per class, kept or not
      jobs.each(&:give_back)
    end
  end

  it "runs the jobs of more classes than the engine shares names for, its table by name object bounded" do
    classes = Array.new(600) { |i| Object.const_set("ProcManyJob#{i}", Class.new(ProcOkJob)) }
    classes.each_with_index { |c, i| 2.times { queue_raw(c.name, [i]) } }
    with_native_worker(limit: 1200) do |native|
      runner = processor.call(native)
      taken = []
      wait_for(message: "1200 jobs to take") { taken.concat(native._take(1200)).size == 1200 }
      taken.each { |job| runner.run(job) }
      wait_for(message: "1200 acks") { redis.get("fiber_job:stat:processed") == "1200" }
      table = runner.instance_variable_get(:@by_name_object)
      expect(table.size).to eq(described_class::SHARED_NAMES)
    end
    expect(Ran.all.sort).to eq((0...600).flat_map { |i| [[i], [i]] })
  ensure
    600.times { |i| Object.send(:remove_const, "ProcManyJob#{i}") if Object.const_defined?("ProcManyJob#{i}") }
  end

  describe ".job_class" do
    it "finds only FiberJob::Job subclasses, by constant name" do
      expect(described_class.job_class("ProcOkJob")).to eq([ProcOkJob])
      expect(described_class.job_class("::ProcOkJob")).to eq([ProcOkJob])
      expect(described_class.job_class("FiberJob::Job")).to eq([:not_a_job])
      expect(described_class.job_class("File")).to eq([:not_a_job])
      expect(described_class.job_class("system('x')")).to eq([:invalid])
      expect(described_class.job_class(nil)).to eq([:invalid])
      kind, error = described_class.job_class("NoSuchJobHere")
      expect([kind, error.class]).to eq([:unknown, NameError])
    end
  end

  describe ".interruption?" do
    it "is true only for stops and signals (a job's `exit` is its failure, as in Sidekiq)" do
      expect(described_class.interruption?(FiberJob::Shutdown.new)).to be(true)
      expect(described_class.interruption?(Interrupt.new)).to be(true)
      expect(described_class.interruption?(SystemExit.new)).to be(false)
      expect(described_class.interruption?(LoadError.new)).to be(false)
      expect(described_class.interruption?(NoMemoryError.new)).to be(false)
      expect(described_class.interruption?(SystemStackError.new)).to be(false)
    end
  end
end
