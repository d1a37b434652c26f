# frozen_string_literal: true

require "tmpdir"

# Redis over its maxmemory (noeviction) refuses every write that may grow memory. A
# real redis-server of the spec's own is made full by setting maxmemory below what it
# uses, with jobs running, then given room again.
RSpec.describe "Redis out of memory" do
  before do
    @server = RedisServer.new(args: ["--maxmemory-policy", "noeviction"]).start
    FiberJob.config.redis_url = @server.url
    @raw = Redis.new(url: @server.url)
    @dir = Dir.mktmpdir("fiber_job-full")
  end

  after do
    kill_spawned
    @raw&.close
    @server&.cleanup
    FileUtils.rm_rf(@dir)
  end

  def full!
    @raw.config(:set, "maxmemory", "1")
  end

  def room!
    @raw.config(:set, "maxmemory", "0")
  end

  it "loses no job: what workers were running is recorded, the rest waits, every job ends where it should" do
    # Jobs write what they did to files, not Redis (which refuses writes while full).
    jobs = <<~RUBY
      module Log
        def self.add(file, line) = File.open(File.join(#{@dir.dump}, file), "a") { |f| f.puts(line) }
      end
      class FullOkJob < FiberJob::Job
        def perform(i) = (sleep 0.001; Log.add("ok", i))
      end
      class FullFailJob < FiberJob::Job
        def initialize = (super; @max_retries = 2)
        def retry_delay(_attempt) = 0
        def perform(i) = (sleep 0.001; Log.add("fail", i); raise "boom \#{i}")
      end
    RUBY
    stub_const("FullOkJob", Class.new(FiberJob::Job))
    stub_const("FullFailJob", Class.new(FiberJob::Job))
    FullOkJob.perform_bulk(Array.new(1000) { |i| [i] })
    FullFailJob.perform_bulk(Array.new(1000) { |i| [i] })

    # Two workers: had either stopped beating while Redis was full, the other would
    # have recovered its jobs as a dead worker's and run them twice.
    workers = Array.new(2) do
      spawn_ruby(<<~RUBY)
        #{jobs}
        FiberJob.configure { |c| c.queue_concurrency = { default: 5 } }
        FiberJob::Worker.new.start
      RUBY
    end
    ok = -> { File.exist?(File.join(@dir, "ok")) ? File.readlines(File.join(@dir, "ok")).size : 0 }
    failed = -> { File.exist?(File.join(@dir, "fail")) ? File.readlines(File.join(@dir, "fail")).size : 0 }
    wait_for(timeout: 30, message: "jobs running") { ok.call + failed.call >= 300 }
    full!
    expect { FullOkJob.perform_async(-1) }.to raise_error(FiberJob::RedisFullError)
    sleep 2 # full: running jobs finish and are recorded, nothing new starts
    stalled_at = ok.call + failed.call
    sleep 5 # longer than a heartbeat lives
    expect(ok.call + failed.call).to eq(stalled_at) # nothing taken while full
    expect(@raw.scard("fiber_job:processes")).to eq(2)
    workers.each { |_, log| expect(File.read(log)).to include("out of memory") }
    room!
    wait_for(timeout: 60, message: "every job done") do
      ok.call >= 1000 && @raw.zcard("fiber_job:dead:{default}") >= 1000
    end
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0])
    workers.each { |_, log| expect(File.read(log)).not_to include("stopped beating") }

    ran_ok = File.readlines(File.join(@dir, "ok")).map(&:to_i)
    dead = @raw.zrange("fiber_job:dead:{default}", 0, -1).map { |j| JSON.parse(j) }
    failing_runs = File.readlines(File.join(@dir, "fail")).map(&:to_i)
    puts format("\n    Redis full mid-run: %d ok jobs ran (%d distinct), %d failing jobs dead after %d runs; processed=%s failed=%s",
                ran_ok.size, ran_ok.uniq.size, dead.size, failing_runs.size,
                @raw.get("fiber_job:stat:processed"), @raw.get("fiber_job:stat:failed"))
    expect(ran_ok.sort).to eq((0...1000).to_a) # each exactly once
    expect(dead.map { |d| d["args"].first }.sort).to eq((0...1000).to_a)
    expect(dead.map { |d| d["retry_count"] }.uniq).to eq([3])
    expect(failing_runs.tally.values.uniq).to eq([3]) # each failing job ran exactly three times
    expect(@raw.get("fiber_job:stat:processed").to_i).to eq(1000)
    expect(@raw.get("fiber_job:stat:failed").to_i).to eq(3000)
    expect(@raw.llen("fiber_job:queue:{default}")).to eq(0)
    expect(held_keys(client: @raw)).to be_empty
    expect(@raw.zcard("fiber_job:retry:{default}")).to eq(0)
  end

  it "refuses every kind of enqueue with RedisFullError, saying the job was not stored, and stores nothing" do
    job = Class.new(FiberJob::Job)
    stub_const("FullEnqueueJob", job)
    FullEnqueueJob.perform_async(0) # a connection exists before Redis fills up
    @raw.del("fiber_job:queue:{default}", "fiber_job:queues")
    full!
    calls = {
      "perform_async" => -> { FullEnqueueJob.perform_async(1) },
      "perform_async (Ruby path)" => -> { FullEnqueueJob.perform_async(2**63) },
      "perform_bulk" => -> { FullEnqueueJob.perform_bulk([[1], [2]]) },
      "perform_in" => -> { FullEnqueueJob.perform_in(60, 1) },
      "perform_at" => -> { FullEnqueueJob.perform_at(Time.now + 60, 1) }
    }
    calls.each do |name, call|
      expect(&call).to raise_error(FiberJob::RedisFullError, /out of memory.*/m) do |e|
        expect(e.message).to include("the job was not stored"), name
        expect(e.message).to include("maxmemory"), name
      end
    end
    # Many threads at once take the shared connection instead of the direct one.
    errors = Array.new(8) { Thread.new { FullEnqueueJob.perform_async(3) rescue $! } }.map(&:value)
    expect(errors).to all(be_a(FiberJob::RedisFullError))
    room!
    expect(@raw.llen("fiber_job:queue:{default}")).to eq(0)
    expect(@raw.zcard("fiber_job:schedule:{default}")).to eq(0)
    expect(@raw.exists?("fiber_job:queues")).to be(false)
    expect(FullEnqueueJob.perform_async(4)).to match(/\A\h{24}\z/)
  end

  it "fires the cron ticks that came due while Redis was full once it has room, each once, none skipped" do
    # Every second a tick; Redis refuses them for 4 s. Each is tried until a minute
    # after its time, in order, so the ones that came due meanwhile run late, not never.
    jobs = <<~RUBY
      class Ticks
        def call(_job, payload, _queue)
          File.open(File.join(#{@dir.dump}, "ticks"), "a") { |f| f.puts(payload["cron_tick"]) }
          yield
        end
      end
      class FullCronJob < FiberJob::CronJob
        cron "* * * * * *"
        def execute_cron_job = nil
      end
    RUBY
    workers = start_workers(2, jobs, config: "c.server_middleware { |chain| chain.add Ticks }")
    ticks = -> { File.exist?(File.join(@dir, "ticks")) ? File.readlines(File.join(@dir, "ticks")).map(&:to_i) : [] }
    wait_for(timeout: 30, message: "ticks running") { ticks.call.size >= 2 }
    full!
    full_at = Time.now.to_i
    sleep 4
    room!
    wait_for(timeout: 30, message: "ticks after the full period") { ticks.call.max.to_i > Time.now.to_i - 1 && ticks.call.max > full_at + 5 }
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0])
    seen = ticks.call
    puts "\n    cron every second, Redis full 4 s: #{seen.size} ticks ran, #{seen.max - seen.min + 1} seconds spanned"
    expect(seen.uniq.size).to eq(seen.size) # none twice
    expect(seen.sort).to eq((seen.min..seen.max).to_a) # none skipped, the full seconds included
  end

  it "warns when a worker starts on a Redis that evicts keys when full" do
    evicting = RedisServer.new(args: ["--maxmemory-policy", "allkeys-lru"]).start
    FiberJob.config.redis_url = evicting.url
    (pid, log), = start_workers(1, "")
    wait_for(message: "the warning") { File.read(log).include?("maxmemory-policy allkeys-lru") }
    expect(File.read(log)).to include("noeviction")
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
  ensure
    evicting&.cleanup
  end
end
