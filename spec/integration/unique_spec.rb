# frozen_string_literal: true

class UniqueJob < FiberJob::Job
  unique_for 60

  def perform(n, seconds = 0)
    Ran.record(n)
    sleep seconds
  end
end

class UniqueAtStartJob < UniqueJob
  unique_for 60, until: :start
end

class UniqueByAccountJob < UniqueJob
  unique_by { |account_id, *| account_id }
end

class ShortLockJob < UniqueJob
  unique_for 0.5
end

class UniqueDyingJob < FiberJob::Job
  unique_for 60

  def initialize
    super
    @max_retries = 0
  end

  def perform(_n)
    raise "boom"
  end
end

RSpec.describe "unique jobs (unique_for)" do
  before { Ran.reset! }

  it "enqueues a duplicate of a pending job not at all: nil, and an :enqueue event marked skipped" do
    events = []
    FiberJob.on(:enqueue) { |e| events << [e.jid, e.skipped] }
    first = UniqueJob.perform_async(1)
    expect(first).to match(/\A\h{24}\z/)
    expect(UniqueJob.perform_async(1)).to be_nil
    expect(UniqueJob.perform_in(30, 1)).to be_nil
    expect(UniqueJob.perform_async(2)).to be_a(String)
    expect(UniqueJob.perform_bulk([[3], [3], [1], [4]]).map(&:nil?)).to eq([false, true, true, false])
    expect(UniqueByAccountJob.perform_async(7, "a")).to be_a(String)
    expect(UniqueByAccountJob.perform_async(7, "b")).to be_nil # same account
    expect(FiberJob::Queue.stats(:default)[:size]).to eq(5)
    expect(events.count { |_, skipped| skipped }).to eq(5)
    expect(events.first).to eq([first, false])
    lock = redis.keys("fiber_job:unique:{default}:*").first
    expect(redis.pttl(lock)).to be_between(1, 60_000)
  end

  it "frees the lock when the job succeeds (default) or when it starts (until: :start)" do
    with_worker do
      UniqueJob.perform_async(1, 0.6)
      UniqueAtStartJob.perform_async(2, 0.6)
      wait_for { Ran.calls.size == 2 } # both running
      expect(UniqueJob.perform_async(1, 0.6)).to be_nil              # still running: locked
      # started: free (the engine frees it as the job starts, a round trip later)
      wait_for(timeout: 0.5, message: "the lock freed at start") { UniqueAtStartJob.perform_async(2, 0.6) }
      wait_for(timeout: 5) { Ran.calls.size == 3 && FiberJob::Queue.metrics(["default"])["default"][:held].zero? }
      wait_for { UniqueJob.perform_async(1, 0.6) } # succeeded: free again
      wait_for { Ran.calls.size == 4 }
    end
  end

  it "frees the lock when the job dies, keeps it over a retry, and a hand retry from the dead set takes it again" do
    jid = UniqueDyingJob.perform_async(1)
    with_worker { wait_for { redis.zcard("fiber_job:dead:{default}") == 1 } }
    wait_for { redis.keys("fiber_job:unique:{default}:*").empty? }
    expect(FiberJob::Queue.retry_dead(jid)).to be(true)
    expect(UniqueDyingJob.perform_async(1)).to be_nil # the retried job holds the lock
  end

  it "lets a lock lapse after unique_for, so a crash never locks a job forever" do
    expect(ShortLockJob.perform_async(1)).to be_a(String)
    expect(ShortLockJob.perform_async(1)).to be_nil
    sleep 0.6
    expect(ShortLockJob.perform_async(1)).to be_a(String)
  end

  it "runs exactly one of each distinct job: 1,000 enqueues of 50 from 4 threads, 3 worker processes" do
    jobs = <<~RUBY
      class ContendedUniqueJob < FiberJob::Job
        unique_for 60
        def perform(n)
          Record.add(n)
          sleep 0.5
        end
      end
    RUBY
    eval(jobs) # rubocop:disable Security/Eval -- the same class here, to enqueue it
    workers = start_workers(3, jobs, config: "c.queue_concurrency = { default: 20 }")
    wait_for { redis.scard("fiber_job:processes") == 3 }
    jids = Array.new(4) { |t| Thread.new { Array.new(250) { |i| ContendedUniqueJob.perform_async((t * 250 + i) % 50) } } }
                .flat_map(&:value)
    expect(jids.compact.size).to eq(50)
    wait_for(timeout: 30) { records.size >= 50 && FiberJob::Queue.metrics(["default"])["default"][:held].zero? }
    sleep 0.3
    expect(records.map(&:to_i).sort).to eq((0...50).to_a)
    puts "\n    1,000 enqueues of 50 distinct unique jobs from 4 threads, 3 workers: #{records.size} ran"
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0, 0])
  end

  it "waits for redis_wait_replicas like any enqueue, and says when no replica confirmed" do
    # A chaos run lost a unique job across a Sentinel failover: its enqueue did not wait.
    FiberJob.configure do |c|
      c.redis_wait_replicas = 1 # the test Redis has no replica
      c.network_timeout = 0.4
    end
    expect { UniqueJob.perform_async("replicated") }
      .to raise_error(FiberJob::ConnectionError, /replica\(s\) confirmed it in time \(redis_wait_replicas\)/)
    expect { UniqueJob.perform_in(5, "replicated later") }
      .to raise_error(FiberJob::ConnectionError, /redis_wait_replicas/)
    expect(redis.llen("fiber_job:queue:{default}")).to eq(1) # stored on the master all the same
  end

  it "refuses bad settings with an ArgumentError naming the class" do
    expect { Class.new(FiberJob::Job) { unique_for(0) } }.to raise_error(ArgumentError, /unique_for takes a positive number/)
    expect { Class.new(FiberJob::Job) { unique_for(5, until: :end) } }.to raise_error(ArgumentError, /until: is :success or :start/)
    expect { Class.new(FiberJob::Job) { unique_by } }.to raise_error(ArgumentError, /unique_by takes a block/)
  end
end
