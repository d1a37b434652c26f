# frozen_string_literal: true

require "tmpdir"

# Redis Sentinel: one master, one replica, three sentinels of the spec's own. Clients
# and workers ask the sentinels for the master, and after a failover find the new one
# and go on, without a restart.
RSpec.describe "Redis Sentinel", :slow do
  before do
    @group = SentinelGroup.new.start
    @dir = Dir.mktmpdir("fiber_job-sentinel-runs")
    FiberJob.reset!
    FiberJob.configure do |c|
      c.redis_sentinels = @group.sentinel_urls
      c.redis_sentinel_master = SentinelGroup::MASTER
      c.network_timeout = 2
    end
  end

  after do
    kill_spawned
    @group&.cleanup
    FileUtils.rm_rf(@dir)
  end

  def lines(pattern) = lines_in(@dir, pattern)

  it "follows a failover after the master is killed: work resumes, and nothing acknowledged is lost" do
    total = 2000
    jobs = <<~RUBY
      class SentinelJob < FiberJob::Job
        def perform(i) = File.open(File.join(#{@dir.dump}, "ran-\#{Process.pid}"), "a") { |f| f.puts("\#{i} \#{Time.now.to_f}") }
      end
    RUBY
    workers = start_workers(2, jobs, config: "c.queue_concurrency = { default: 5 }")
    producer, producer_log = start_producer(total, dir: @dir, prelude: "class SentinelJob < FiberJob::Job; end",
                                                   enqueue: "SentinelJob.perform_async(i)", pause: 0.0025)
    wait_for(timeout: 30, message: "jobs flowing") { lines("ran-*").size >= 400 }
    old_port = @group.master_port
    killed_at = Time.now.to_f
    @group.master.kill9
    wait_for(timeout: 30, message: "a new master") { (p = @group.master_port).positive? && p != old_port }
    promoted_after = Time.now.to_f - killed_at
    expect(wait_process(producer, timeout: 60).exitstatus).to eq(0)
    acked = lines("acked").map { |(i)| i.to_i }
    wait_for(timeout: 60, message: "every acknowledged job") { (acked - lines("ran-*").map { |i, _| i.to_i }).empty? }
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0])

    runs = lines("ran-*").map { |i, at| [i.to_i, at.to_f] }
    ran = runs.map(&:first)
    first_after = runs.map(&:last).select { |at| at > killed_at + 0.001 }.min
    lost = (acked.uniq - ran.uniq).size
    twice = ran.tally.count { |_, n| n > 1 }
    puts format("\n    sentinel failover: master killed; promoted after %.1fs; first job on the new master %.1fs after the kill; " \
                "%d acknowledged, %d ran, %d lost, %d ran twice; %s",
                promoted_after, first_after - killed_at, acked.uniq.size, ran.uniq.size, lost, twice,
                File.read(producer_log).lines.grep(/producer done|enqueue failed/).map(&:strip).join("; "))
    expect(acked.uniq.size).to eq(total)
    # Replication is asynchronous: a write the old master acknowledged in the instant
    # before it died may never have reached the replica (README, "Sentinel").
    expect(lost).to be <= 1
    expect(first_after - killed_at).to be < 15
  end

  # A manual failover (or a partition) leaves the old master alive and taking writes
  # until the sentinels reconfigure it, seconds later; what it took meanwhile is lost
  # when it becomes a replica. FiberJob moves to the new master the moment the sentinels
  # announce it (+switch-master), which shrinks that window to the announcement's delay;
  # redis_wait_replicas closes it.
  def enqueue_across_manual_failover(seconds: 6)
    stub_const("DemoteJob", Class.new(FiberJob::Job))
    old_port = @group.master_port
    acked = []
    acked_at = {}
    refused = 0
    # When the sentinel FiberJob listens to (the first) announces the switch.
    announced = Queue.new
    listener = Thread.new do
      Redis.new(host: "127.0.0.1", port: @group.sentinel_ports.first).subscribe("+switch-master") do |on|
        on.message { announced << Process.clock_gettime(Process::CLOCK_MONOTONIC) }
      end
    end
    enqueuer = Thread.new do
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
      while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
        begin
          jid = DemoteJob.perform_async(acked.size)
          acked << jid
          acked_at[jid] = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        rescue FiberJob::ConnectionError
          refused += 1
        end
      end
    end
    sleep 1
    @group.ask(@group.sentinel_ports.first, "SENTINEL", "FAILOVER", SentinelGroup::MASTER)
    enqueuer.join(seconds + 30)
    expect(@group.master_port).not_to eq(old_port)
    switched_at = announced.pop(timeout: 10)
    kept = redis.lrange("fiber_job:queue:{default}", 0, -1).map { |j| JSON.parse(j)["jid"] }
    [acked, acked - kept, refused, switched_at && (acked - kept).map { |jid| acked_at[jid] - switched_at }.max]
  ensure
    listener&.kill
  end

  it "follows a demoted master without surfacing READONLY, losing only what the old master took before the announcement" do
    acked, lost, refused, last_lost = enqueue_across_manual_failover
    puts format("\n    manual failover: %d enqueues acknowledged, %d lost in the switch window (%.2f %%), %d refused; " \
                "the last lost one acknowledged %+.3f s from +switch-master",
                acked.size, lost.size, 100.0 * lost.size / acked.size, refused, last_lost.to_f)
    expect(refused).to eq(0) # READONLY and reconnects never reach the caller
    # Sentinel announces the switch only once it sees the promotion (it polls INFO once
    # a second during a failover): what the old master took until then is lost — but
    # nothing acknowledged after the announcement reached FiberJob's watcher.
    expect(lost.size).to be < acked.size
    expect(last_lost).to be < 0.2 if lost.any?
    expect(FiberJob::Queue.redis_info[:connected_to]).to include("now at 127.0.0.1:#{@group.master_port}")
  end

  it "loses no acknowledged enqueue with redis_wait_replicas: 1" do
    FiberJob.configure { |c| c.redis_wait_replicas = 1 }
    acked, lost, refused, = enqueue_across_manual_failover
    puts format("\n    manual failover, redis_wait_replicas 1: %d enqueues acknowledged, %d lost, %d refused (stored, unconfirmed)",
                acked.size, lost.size, refused)
    expect(lost).to be_empty
    expect(acked.size).to be > 100
  end

  # Clients' connections to a server: not the replicas' (flags=S), not the one asking.
  def client_connections(port) = Resp.ask(port, "CLIENT", "LIST").lines.grep_v(/cmd=client|flags=S/).size

  it "enqueues on each thread's own connection to the master (the direct path), and to the new one after a failover" do
    stub_const("SentinelDirectJob", Class.new(FiberJob::Job))
    old_port = @group.master_port
    before = client_connections(old_port)
    SentinelDirectJob.perform_async("first") # the shared connection finds the master first
    expect(client_connections(old_port)).to eq(before + 1)
    go = Queue.new
    pushed = Queue.new
    thread = Thread.new do # a thread's direct connection lives as long as the thread
      while (label = go.pop)
        5.times { |i| SentinelDirectJob.perform_async(label, i) }
        pushed << true
      end
    end
    go << "before"
    pushed.pop
    expect(client_connections(old_port)).to eq(before + 2) # the shared one and the thread's
    @group.ask(@group.sentinel_ports.first, "SENTINEL", "FAILOVER", SentinelGroup::MASTER)
    wait_for(timeout: 30, message: "the sentinels to name a new master") { @group.master_port != old_port }
    new_port = @group.master_port
    wait_for(timeout: 30, message: "the old master to become a replica") do
      Resp.ask(old_port, "ROLE").first == "slave"
    end
    go << "after"
    pushed.pop
    expect(client_connections(new_port)).to be >= 2 # the shared one and the thread's, remade
    labels = redis.lrange("fiber_job:queue:{default}", 0, -1).map { |j| JSON.parse(j)["args"].first }
    expect(labels.count("after")).to eq(5)
  ensure
    go&.close
    thread&.join
  end

  it "refuses a redis_url set together with sentinels, naming both" do
    expect { FiberJob.configure { |c| c.redis_url = "redis://127.0.0.1:6379" } }
      .to raise_error(FiberJob::ConfigurationError, /redis_url and redis_sentinels are both set/)
  end
end
