# frozen_string_literal: true

require "rack/test"
require "fiber_job/web"

# FiberJob over TLS only: real redis-servers with --tls-port and no plain port, a CA
# and certificates made with openssl, the engine's end-to-end scenarios in real worker
# processes, and each kind of handshake failure as the error that says what it is.
RSpec.describe "Redis over TLS" do
  include Rack::Test::Methods

  def app = FiberJob::Web

  before(:all) do
    @pki = Certificates.new
    cert, key = @pki.pair("server")
    @tls = RedisServer.new(tls: { cert: cert, key: key, ca: @pki.ca_file }).start
    @mtls = RedisServer.new(tls: { cert: cert, key: key, ca: @pki.ca_file, auth_clients: true }).start
    other_cert, other_key = @pki.pair("other")
    @misnamed = RedisServer.new(tls: { cert: other_cert, key: other_key, ca: @pki.ca_file }).start
  end

  after(:all) do
    [@tls, @mtls, @misnamed].compact.each(&:cleanup)
    @pki&.cleanup
  end

  def use(server, **tls)
    FiberJob.configure do |c|
      c.redis_url = server.url
      c.redis_tls = { ca_file: @pki.ca_file }.merge(tls)
      c.network_timeout = 2
    end
    @redis = nil
    redis.flushdb
  end

  it "runs the engine end to end over TLS: every enqueue, a retry, cron, kill -9 recovery, the Web UI" do
    use(@tls)
    jobs = <<~RUBY
      class TlsJob < FiberJob::Job
        def perform(*args) = (sleep 0.05; Record.add(JSON.generate(args)))
      end
      class TlsFlakyJob < FiberJob::Job
        def retry_delay(_) = 0
        def perform(i)
          raise "first try fails" if retry_count.zero?
          Record.add("flaky-\#{i}-\#{retry_count}")
        end
      end
      class TlsCronJob < FiberJob::CronJob
        cron "* * * * * *"
        def execute_cron_job = Record.add("cron")
      end
    RUBY
    stub_const("TlsJob", Class.new(FiberJob::Job))
    stub_const("TlsFlakyJob", Class.new(FiberJob::Job))
    TlsJob.perform_async(1, "one")
    TlsJob.perform_bulk(Array.new(60) { |i| [i, "bulk"] })
    TlsJob.perform_in(0.3, 2, "scheduled")
    TlsFlakyJob.perform_async(7)
    workers = start_workers(2, jobs, config: "c.queue_concurrency = { default: 5 }")
    wait_for(timeout: 20, message: "some jobs") { records.size >= 10 }
    Process.kill("KILL", workers[0][0]) # its jobs come back through the other worker's reaper
    wait_process(workers[0][0])
    wait_for(timeout: 30, message: "every job") do
      ran = records
      ran.include?(JSON.generate([2, "scheduled"])) && ran.include?("flaky-7-1") && ran.include?("cron") &&
        (0...60).all? { |i| ran.include?(JSON.generate([i, "bulk"])) } && ran.include?(JSON.generate([1, "one"]))
    end
    expect(stop_workers([workers[1]]).map(&:exitstatus)).to eq([0])
    expect(held_payloads).to be_empty

    get "/"
    expect(last_response.status).to eq(200)
    expect(last_response.body).to include("rediss://127.0.0.1:#{@tls.port}/0 (TLS)", "Processed")
    %w[/queues /busy /cron /dead /retries].each do |page|
      get page
      expect(last_response.status).to eq(200), page
    end
  end

  it "does mutual TLS with a client certificate, and says so when one is missing" do
    cert, key = @pki.pair("client")
    use(@mtls, cert_file: cert, key_file: key)
    expect(FiberJob::Queue.stats(:default)).to include(size: 0)
    FiberJob.reset!
    FiberJob.configure do |c|
      c.redis_url = @mtls.url
      c.redis_tls = { ca_file: @pki.ca_file }
      c.network_timeout = 1
    end
    expect { FiberJob::Queue.stats(:default) }
      .to raise_error(FiberJob::ConnectionError, /requires a client certificate.*cert_file/m)
  end

  # Connections to the server other than the one asking: the shared one, and each
  # thread's own for the direct enqueue path.
  def other_connections(server_redis) = server_redis.call("CLIENT", "LIST").lines.grep_v(/cmd=client/).size

  it "enqueues on each thread's own TLS connection (the direct path), with a CA file, a client certificate or verify_peer: false" do
    cert, key = @pki.pair("client")
    stub_const("TlsDirectJob", Class.new(FiberJob::Job))
    { "a CA file" => [@tls, {}], "a client certificate" => [@mtls, { cert_file: cert, key_file: key }],
      "verify_peer: false" => [@tls, { verify_peer: false }] }.each do |what, (server, tls)|
      FiberJob.reset!
      use(server, **tls)
      before = other_connections(redis) # an earlier example's, until they are collected
      TlsDirectJob.perform_async(0) # the shared connection reaches the server first
      expect(other_connections(redis)).to eq(before + 1), what
      pushed = Queue.new
      done = Queue.new
      thread = Thread.new do # a thread's direct connection lives as long as the thread
        5.times { |i| TlsDirectJob.perform_async(i) }
        pushed << true
        done.pop
      end
      pushed.pop
      expect(other_connections(redis)).to eq(before + 2), what # the shared one and the thread's
      done << true
      thread.join
      expect(redis.llen("fiber_job:queue:{default}")).to eq(6), what
    end
  end

  it "names each handshake failure within network_timeout" do
    plain = TEST_REDIS
    cases = {
      "a CA it does not trust" => [@tls.url, { ca_file: @pki.other_ca_file }, /unknown CA.*ca_file/m],
      "a certificate for another name" => [@misnamed.url, { ca_file: @pki.ca_file }, /name mismatch/],
      "a server without TLS" => [plain.url.sub("redis://", "rediss://"), { ca_file: @pki.ca_file }, /does not speak TLS.*redis:\/\//m],
      "a TLS server behind redis://" => [@tls.url.sub("rediss://", "redis://"), nil, /if it requires TLS, use rediss:\/\//]
    }
    cases.each do |what, (url, tls, message)|
      FiberJob.reset!
      FiberJob.configure do |c|
        c.redis_url = url
        c.redis_tls = tls
        c.network_timeout = 1
      end
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect { FiberJob::Queue.stats(:default) }.to raise_error(FiberJob::ConnectionError, message), what
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 1.5, what
    end
  end

  it "accepts any certificate with verify_peer: false (a provider's self-signed one)" do
    FiberJob.configure do |c|
      c.redis_url = @tls.url
      c.redis_tls = { verify_peer: false }
    end
    stub_const("TlsAnyJob", Class.new(FiberJob::Job))
    expect(TlsAnyJob.perform_async(1)).to match(/\A\h{24}\z/)
    expect(FiberJob.config.redis_description).to include("peer not verified")
  end

  it "refuses TLS settings it cannot use, naming them" do
    c = FiberJob.config
    expect { c.redis_tls = { ca_file: "/no/such.pem" } }.to raise_error(FiberJob::ConfigurationError, /ca_file.*does not exist/)
    expect { c.redis_tls = { cert_file: @pki.ca_file } }.to raise_error(FiberJob::ConfigurationError, /cert_file and key_file go together/)
    expect { c.redis_tls = { verify: true } }.to raise_error(FiberJob::ConfigurationError, /unknown key\(s\) verify/)
    expect { c.redis_tls = { verify_peer: "no" } }.to raise_error(FiberJob::ConfigurationError, /true or false/)
  end
end
