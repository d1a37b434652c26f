# frozen_string_literal: true

# The direct enqueue path (src/direct.rs): a push made alone goes over a blocking
# connection of the calling thread. These hold it to the same contracts as the shared
# path: a hung Redis fails within network_timeout (not twice it), an interrupt ends the
# wait at once, a restarted Redis is reconnected, AUTH and the database number apply.
class DirectJob < FiberJob::Job
  def perform(*); end
end

RSpec.describe "enqueueing on the direct path" do
  let(:server) { RedisServer.new.start }

  before do
    FiberJob.configure do |c|
      c.redis_url = server.url
      c.network_timeout = 0.5
    end
  end

  after { server.cleanup }

  def monotonic = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  it "raises ConnectionError within network_timeout when Redis hangs, and works once it answers again" do
    DirectJob.perform_async(1) # the thread's direct connection exists now
    server.pause
    started = monotonic
    expect { DirectJob.perform_async(2) }.to raise_error(FiberJob::ConnectionError, /did not answer within 0.5s/)
    expect(monotonic - started).to be < 0.9 # one deadline, not the direct one plus the shared one
    server.resume
    expect(DirectJob.perform_async(3)).to match(/\A\h{24}\z/)
    # Job 2 may have reached Redis (its request was written before the freeze); 1 and 3 did.
    args = FiberJob::Queue.jobs(:default, limit: 10).map { |j| j["args"].first }
    expect(args & [1, 3]).to eq([1, 3])
  end

  it "ends a wait on a hung Redis at once when the thread is interrupted" do
    FiberJob.configure { |c| c.network_timeout = 30 }
    DirectJob.perform_async(1)
    server.pause
    error = nil
    thread = Thread.new do
      DirectJob.perform_async(2)
    rescue Interrupt => e
      error = e
    end
    sleep 0.2
    started = monotonic
    thread.raise(Interrupt, "stop waiting")
    expect(thread.join(5)).not_to be_nil
    expect(monotonic - started).to be < 1.0
    expect(error&.message).to eq("stop waiting")
  ensure
    server.resume
  end

  it "stores each job once when signals arrive during enqueues (a trapped TERM or USR2 mid-push)" do
    FiberJob.configure { |c| c.network_timeout = 5 }
    pid, log = spawn_ruby(<<~RUBY)
      class DirectJob < FiberJob::Job; end
      Signal.trap("USR2") {}
      puts "ready"
      5000.times { |i| DirectJob.perform_async(i) }
      puts "done"
    RUBY
    wait_for { File.read(log).include?("ready") }
    deadline = monotonic + 60
    status = nil
    until (status = Process.wait2(pid, Process::WNOHANG)&.last)
      raise "the enqueuing process did not finish within 60 s; its output: #{File.read(log)}" if monotonic > deadline

      Process.kill("USR2", pid) unless File.read(log).include?("done")
      sleep 0.0005
    end
    expect(status.exitstatus).to eq(0), File.read(log)
    args = redis.lrange("fiber_job:queue:{default}", 0, -1).map { |j| JSON.parse(j)["args"].first }
    expect(args.size).to eq(5000)
    expect(args.sort).to eq((0...5000).to_a)
  end

  it "reconnects after Redis restarts" do
    DirectJob.perform_async(1)
    server.kill9
    server.start
    expect(DirectJob.perform_async(2)).to match(/\A\h{24}\z/)
    expect(FiberJob::Queue.jobs(:default).map { |j| j["args"] }).to eq([[2]])
  end

  it "authenticates and selects the URL's database" do
    secured = RedisServer.new(args: ["--requirepass", "pw"]).start
    FiberJob.config.redis_url = "redis://:pw@127.0.0.1:#{secured.port}/3"
    3.times { |i| DirectJob.perform_async(i) }
    raw = Redis.new(url: "redis://:pw@127.0.0.1:#{secured.port}/3")
    expect(raw.llen("fiber_job:queue:{default}")).to eq(3)
    expect(Redis.new(url: "redis://:pw@127.0.0.1:#{secured.port}/0").dbsize).to eq(0)
  ensure
    secured&.cleanup
  end

  it "gives a forked child its own connection" do
    DirectJob.perform_async("parent")
    pid = fork do
      DirectJob.perform_async("child")
      exit!(0)
    end
    Process.wait(pid)
    expect($?.exitstatus).to eq(0)
    DirectJob.perform_async("parent again")
    expect(FiberJob::Queue.jobs(:default).map { |j| j["args"].first }).to eq(["parent", "child", "parent again"])
  end
end
