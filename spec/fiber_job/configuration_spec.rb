# frozen_string_literal: true

RSpec.describe FiberJob::Configuration do
  subject(:config) { described_class.new }

  around do |example|
    saved = ENV.to_h.slice("REDIS_URL", "FIBER_JOB_LOG_LEVEL")
    ENV.delete("REDIS_URL")
    ENV.delete("FIBER_JOB_LOG_LEVEL")
    example.run
  ensure
    %w[REDIS_URL FIBER_JOB_LOG_LEVEL].each { |k| saved.key?(k) ? ENV[k] = saved[k] : ENV.delete(k) }
  end

  it "has the README's defaults" do
    expect(config.redis_url).to eq("redis://localhost:6379")
    expect(config.concurrency).to eq(2)
    expect(config.queues).to eq(["default"])
    expect(config.queue_concurrency).to eq("default" => 2)
    expect(config.log_level).to eq(:info)
    expect(config.executor).to eq(:fiber)
    expect(config.shutdown_timeout).to eq(25)
    expect(config.prefetch).to eq(:auto)
  end

  it "reads REDIS_URL and FIBER_JOB_LOG_LEVEL" do
    ENV["REDIS_URL"] = "redis://example:6380/2"
    ENV["FIBER_JOB_LOG_LEVEL"] = "debug"
    expect(described_class.new.redis_url).to eq("redis://example:6380/2")
    expect(described_class.new.log_level).to eq(:debug)
  end

  it "runs the default queue at `concurrency` until queue_concurrency is set" do
    config = described_class.new
    config.concurrency = 10
    expect(config.queue_concurrency).to eq("default" => 10)
    expect(config.concurrency_for(:default)).to eq(10)
    config.queues = ["default", "mail:3"]
    expect(config.queue_concurrency).to eq("default" => 10, "mail" => 3)
    config.queue_concurrency = { default: 4 }
    config.concurrency = 20
    expect(config.concurrency_for(:default)).to eq(4)
    expect(config.concurrency_for(:other)).to eq(20)
    pinned = described_class.new
    pinned.queues = ["default:6"]
    pinned.concurrency = 9
    expect(pinned.concurrency_for(:default)).to eq(6)
  end

  it "takes the README's configure block" do
    FiberJob.configure do |c|
      c.redis_url = TEST_REDIS.url
      c.queues = %i[default high low]
      c.queue_concurrency = { default: 5, high: 10, low: 2 }
      c.log_level = :warn
    end
    expect(FiberJob.config.queues).to eq(%w[default high low])
    expect(FiberJob.config.concurrency_for(:high)).to eq(10)
    expect(FiberJob.config.concurrency_for(:other)).to eq(2)
    expect(FiberJob.logger.level).to eq(Logger::WARN)
  end

  {
    log_level: [:loud, /log_level :loud is not one of debug, info/],
    concurrency: [-1, /concurrency must be a positive Integer, got -1/],
    redis_url: ["http://x", %r{redis_url "http://x" must start with redis://}],
    queues: [[], /queues must list at least one queue/],
    queue_concurrency: [{ default: 0 }, /queue_concurrency\[:default\] must be a positive Integer/],
    executor: [:process, /executor :process is not one of :fiber, :thread/],
    prefetch: [:lots, /prefetch must be :auto or an Integer >= 0, got :lots/]
  }.each do |option, (value, message)|
    it "rejects a bad #{option} with a ConfigurationError naming it" do
      expect { FiberJob.configure { |c| c.public_send(:"#{option}=", value) } }
        .to raise_error(FiberJob::ConfigurationError, message)
    end
  end

  it "takes Redis Cluster seeds, masks their passwords, and refuses what a Cluster cannot be" do
    config.redis_cluster = ["redis://:s3cret@10.0.0.1:7000", "redis://:s3cret@10.0.0.2:7000"]
    expect(config.redis_description).to eq("Redis Cluster via redis://:***@10.0.0.1:7000, redis://:***@10.0.0.2:7000")
    expect(config.check!.connection).to include(cluster: ["redis://:s3cret@10.0.0.1:7000", "redis://:s3cret@10.0.0.2:7000"])
    expect { config.redis_cluster = ["redis://10.0.0.1:7000/2"] }
      .to raise_error(FiberJob::ConfigurationError, %r{redis_cluster: "redis://10.0.0.1:7000/2" is not a Cluster node URL})

    with_db = described_class.new.tap { |c| c.redis_cluster = ["redis://10.0.0.1:7000"] }
    with_db.redis_db = 1
    expect { with_db.check! }.to raise_error(FiberJob::ConfigurationError, /a Redis Cluster has only database 0/)

    with_url = described_class.new.tap { |c| c.redis_cluster = ["redis://10.0.0.1:7000"] }
    with_url.redis_url = "redis://10.0.0.9:6379"
    expect { with_url.check! }.to raise_error(FiberJob::ConfigurationError, /redis_cluster is set together with redis_url/)

    mixed = described_class.new.tap { |c| c.redis_cluster = ["redis://10.0.0.1:7000", "rediss://10.0.0.2:7000"] }
    expect { FiberJob.const_get(:Internal)::Native::Handle.new(mixed.connection, "fiber_job") }
      .to raise_error(FiberJob::ConfigurationError, /mixes redis:\/\/ and rediss:\/\/ nodes/)
  end

  it "hands the engine complete settings, which it reads with no defaults and no unknown keys" do
    connection = config.connection
    expect { FiberJob.const_get(:Internal)::Native::Handle.new(connection, "fiber_job") }.not_to raise_error

    misspelt = connection.merge(wait_replica: 1)
    expect { FiberJob.const_get(:Internal)::Native::Handle.new(misspelt, "fiber_job") }
      .to raise_error(ArgumentError, /unknown connection settings :wait_replica \(known: .*:wait_replicas/)
    expect { FiberJob.const_get(:Internal)::Native::Handle.new(connection.reject { |k, _| k == :db }, "fiber_job") }
      .to raise_error(ArgumentError, /the connection settings lack :db/)
    expect { FiberJob.const_get(:Internal)::Native::Handle.new(connection.merge(db: "zero"), "fiber_job") }
      .to raise_error(TypeError, /setting :db/)
    tls = connection.merge(tls: { ca_file: nil, cert_file: nil, key_file: nil, verify: false })
    expect { FiberJob.const_get(:Internal)::Native::Handle.new(tls, "fiber_job") }
      .to raise_error(ArgumentError, /the connection tls settings lack :verify_peer/)
    worker = { connection: connection, prefix: "fiber_job", identity: "x", queues: [["default", 1, nil]],
               sidekiq_compat: false }
    expect { FiberJob.const_get(:Internal)::Native::Worker.new(worker) }.to raise_error(ArgumentError, /the worker settings lack :health/)
  end

  it "rejects an unparsable URL" do
    expect { config.redis_url = "redis://a b" }.to raise_error(FiberJob::ConfigurationError, /redis_url "redis:\/\/a b" is not a URL/)
  end
end
