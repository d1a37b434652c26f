# frozen_string_literal: true

# Redis answers some writes with an error instead of taking them. Each answer becomes
# an error a user can act on, raised within network_timeout, with nothing stored.
RSpec.describe "Redis error replies at enqueue" do
  let(:job) { Class.new(FiberJob::Job).tap { |k| stub_const("ErrorReplyJob", k) } }

  after { @servers&.each(&:cleanup) }

  def server(*args)
    (@servers ||= []) << RedisServer.new(args: args).start
    @servers.last
  end

  it "READONLY (a replica): ConnectionError saying to point at the master, after network_timeout" do
    master = server
    replica = server("--replicaof", "127.0.0.1", master.port.to_s)
    FiberJob.config.redis_url = replica.url
    FiberJob.config.network_timeout = 1
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    expect { job.perform_async(1) }.to raise_error(FiberJob::ConnectionError, /READONLY.*master/m)
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 3
    expect { job.perform_in(10, 1) }.to raise_error(FiberJob::ConnectionError, /READONLY/)
  end

  it "NOAUTH and WRONGPASS: ConfigurationError saying how to give the password" do
    secured = server("--requirepass", "s3cret")
    FiberJob.config.redis_url = secured.url
    expect { job.perform_async(1) }.to raise_error(FiberJob::ConfigurationError, /NOAUTH.*redis:\/\/:PASSWORD@/m)
    FiberJob.reset!
    FiberJob.config.redis_url = "redis://:wrong@127.0.0.1:#{secured.port}/0"
    expect { job.perform_async(1) }.to raise_error(FiberJob::ConfigurationError, /WRONGPASS|password/)
    FiberJob.reset!
    FiberJob.config.redis_url = "redis://:s3cret@127.0.0.1:#{secured.port}/0"
    expect(job.perform_async(1)).to match(/\A\h{24}\z/)
  end

  it "WRONGTYPE (another program wrote a FiberJob key): FiberJob::Error naming the prefix, nothing stored" do
    redis.set("fiber_job:queue:{default}", "not a list")
    expect { job.perform_async(1) }.to raise_error(FiberJob::Error, /WRONGTYPE.*config\.prefix/m)
    expect { job.perform_bulk([[1], [2]]) }.to raise_error(FiberJob::Error, /WRONGTYPE/)
    expect(redis.get("fiber_job:queue:{default}")).to eq("not a list")
  end
end
