# frozen_string_literal: true

class EnqueueJob < FiberJob::Job
  def perform(*); end
end

class HighJob < FiberJob::Job
  def initialize
    super
    @queue = :high_priority
    @max_retries = 5
    @timeout = 600
  end

  def perform(data); end
end

RSpec.describe FiberJob::Job do
  def queued(queue = "default")
    redis.lrange("fiber_job:queue:{#{queue}}", 0, -1).map { |j| JSON.parse(j) }
  end

  def scheduled(queue = "default")
    redis.zrange("fiber_job:schedule:{#{queue}}", 0, -1, with_scores: true).map { |j, s| [JSON.parse(j), s] }
  end

  describe ".perform_async" do
    it "returns the job id and stores a Sidekiq-shaped payload" do
      jid = EnqueueJob.perform_async(123, "Welcome!", { "a" => [1, 2.5, nil, true] })
      expect(jid).to match(/\A\h{24}\z/)
      job = queued.first
      expect(job).to include("class" => "EnqueueJob", "jid" => jid, "queue" => "default", "retry_count" => 0,
                             "args" => [123, "Welcome!", { "a" => [1, 2.5, nil, true] }])
      expect(job["created_at"]).to be_within(5).of(Time.now.to_f)
      expect(job["enqueued_at"]).to be_within(5).of(Time.now.to_f)
      expect(redis.smembers("fiber_job:queues")).to include("default")
    end

    it "writes JSON that reads back as the same values, in both the Rust and the Ruby path" do
      EnqueueJob.perform_async(1.0, -0.5, 1e20, 2**62, -(2**62), { "z" => 1, "a" => [nil] }, "é\n\"q\"")
      EnqueueJob.perform_async(2**64 - 1, 1.0) # beyond a Fixnum, within 64 bits: the Ruby path
      fast, slow = queued.reverse.map { |j| j["args"] }
      expect(fast).to eq([1.0, -0.5, 1e20, 2**62, -(2**62), { "z" => 1, "a" => [nil] }, "é\n\"q\""])
      expect(fast.first(3)).to all(be_a(Float))
      expect(fast[5].keys).to eq(%w[z a])
      expect(slow).to eq([2**64 - 1, 1.0])
      expect(slow.last).to be_a(Float)
      expect(queued.map(&:keys)).to all(eq(%w[class args jid queue created_at enqueued_at retry_count]))
    end

    it "uses the queue set in initialize" do
      HighJob.perform_async("x")
      expect(queued("high_priority").size).to eq(1)
      expect(HighJob.new.max_retries).to eq(5)
      expect(HighJob.new.timeout).to eq(600)
    end

    {
      "a Symbol" => [:hi, /argument 1 \(:hi\) is a Symbol/],
      "a Time" => [Time.at(0), /argument 1 .* is a Time/],
      "an object" => [Object.new, /argument 1 .* is a Object/],
      "a Symbol key" => [{ a: 1 }, /argument 1 key :a .* keys must be Strings/],
      "a nested Symbol" => [[1, [2, :x]], /argument 1\[1\]\[1\] \(:x\) is a Symbol/],
      "NaN" => [Float::NAN, /is not finite/],
      "2**64" => [2**64, /argument 1 \(18446744073709551616\) is outside 64 bits/],
      "10**20" => [10**20, /argument 1 \(100000000000000000000\) is outside 64 bits/],
      "-2**63 - 1" => [-2**63 - 1, /argument 1 \(-9223372036854775809\) is outside 64 bits/],
      "a binary String" => ["\xFF\xD8\xFF".b, /argument 1 .* is binary data \(ASCII-8BIT\).*Base64/],
      "an invalid UTF-8 String" => [+"caf\xE9", /argument 1 .* is not valid UTF-8/],
      "a binary Hash key" => [{ "\xFF".b => 1 }, /argument 1 key .* is binary data/],
      "a 1,000-deep Array" => [(1..1000).reduce([]) { |a, _| [a] }, /argument 1\[0\].* nests Arrays and Hashes deeper than 64 levels/],
      "an Array that contains itself" => [[1].tap { |a| a << a }, /argument 1\[1\] .* contains itself/],
      "a Hash that contains itself" => [{}.tap { |h| h["me"] = h }, /argument 1\["me"\] .* contains itself/]
    }.each do |what, (arg, message)|
      it "raises ArgumentError for #{what} and enqueues nothing" do
        expect { EnqueueJob.perform_async(arg) }.to raise_error(ArgumentError, message)
        expect { EnqueueJob.perform_async(1, [arg]) }.to raise_error(ArgumentError, /argument 2\[0\]/)
        expect { EnqueueJob.perform_bulk([[1], [arg]]) }.to raise_error(ArgumentError, message)
        expect { EnqueueJob.perform_in(60, arg) }.to raise_error(ArgumentError, message)
        expect(redis.llen("fiber_job:queue:{default}")).to eq(0)
        expect(redis.zcard("fiber_job:schedule:{default}")).to eq(0)
      end
    end

    it "accepts the edges: 64-bit Integers, 64 levels of nesting, text in another encoding" do
      deep = (1..64).reduce("leaf") { |a, _| [a] }
      latin = "caf\xE9".dup.force_encoding("ISO-8859-1")
      EnqueueJob.perform_async(2**64 - 1, -2**63, deep, latin)
      job = queued.first
      expect(job["args"]).to eq([2**64 - 1, -2**63, deep, "café"])
      expect { EnqueueJob.perform_async([deep]) }.to raise_error(ArgumentError, /deeper than 64/)
    end
  end

  describe ".perform_in and .perform_at" do
    it "stores a job for later with its run-at time as the score" do
      jid = EnqueueJob.perform_in(3600, 456, "later")
      job, score = scheduled.first
      expect(job).to include("jid" => jid, "args" => [456, "later"])
      expect(score).to be_within(5).of(Time.now.to_f + 3600)
      expect(FiberJob::Queue.stats(:default)[:scheduled]).to eq(1)
    end

    it "takes a Duration-like object (responds to to_f)" do
      duration = Struct.new(:seconds) { def to_f = seconds.to_f }.new(120)
      EnqueueJob.perform_in(duration, 1)
      expect(scheduled.first.last).to be_within(5).of(Time.now.to_f + 120)
    end

    it "takes a Time, a Date, a DateTime and epoch seconds" do
      require "date"
      t = Time.now + 7200
      EnqueueJob.perform_at(t, 1)
      EnqueueJob.perform_at(Date.today + 1, 2)
      EnqueueJob.perform_at(DateTime.now + 1, 3)
      EnqueueJob.perform_at(t.to_i + 10, 4)
      scores = scheduled.to_h { |job, score| [job["args"].first, score] }
      expect(scores[1]).to be_within(0.01).of(t.to_f)
      expect(scores[2]).to eq((Date.today + 1).to_time.to_f)
      expect(scores[3]).to be_within(5).of(Time.now.to_f + 86_400)
      expect(scores[4]).to eq(t.to_i + 10)
    end

    it "enqueues a time in the past right away" do
      EnqueueJob.perform_at(Time.now - 60, 1)
      expect(queued.size).to eq(1)
      expect(scheduled).to be_empty
    end

    it "rejects what is not a time" do
      expect { EnqueueJob.perform_at("tomorrow", 1) }.to raise_error(ArgumentError, /takes a Time, Date/)
      expect { EnqueueJob.perform_in("soon", 1) }.to raise_error(ArgumentError, /takes seconds/)
    end
  end

  describe ".perform_bulk" do
    it "enqueues many jobs in order and returns their ids" do
      jids = EnqueueJob.perform_bulk([[1], [2], [3]])
      expect(jids.size).to eq(3)
      expect(queued.reverse.map { |j| j["args"] }).to eq([[1], [2], [3]])
    end

    it "checks every argument list before enqueueing any" do
      expect { EnqueueJob.perform_bulk([[1], [:bad]]) }.to raise_error(ArgumentError)
      expect(queued).to be_empty
    end
  end

  describe "when Redis is down" do
    it "raises ConnectionError within network_timeout" do
      server = RedisServer.new
      FiberJob.configure do |c|
        c.redis_url = server.url
        c.network_timeout = 0.5
      end
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect { EnqueueJob.perform_async(1) }.to raise_error(FiberJob::ConnectionError, /Redis/)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 3
    ensure
      server&.cleanup
    end
  end
end
