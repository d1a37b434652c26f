# frozen_string_literal: true

require "net/http"

# `fiber_job --health-port`: /live and /ready of a real worker process, with its Redis
# stopped and with a job that blocks the reactor.
RSpec.describe "health checks (fiber_job --health-port)" do
  let(:dir) { Dir.mktmpdir("fiber_job-health") }
  let(:port) { RedisServer.free_port }

  after { FileUtils.rm_rf(dir) }

  def check(path)
    response = Net::HTTP.start("127.0.0.1", port, open_timeout: 1, read_timeout: 3) { |http| http.get(path) }
    [response.code.to_i, response.body.strip]
  rescue Errno::ECONNREFUSED, Net::OpenTimeout
    [0, "refused"]
  end

  def start(redis_url, *args)
    app = File.join(dir, "app.rb")
    File.write(app, <<~RUBY)
      class StuckJob < FiberJob::Job
        def perform(seconds)
          t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
          nil while Process.clock_gettime(Process::CLOCK_MONOTONIC) - t < seconds # never yields
        end
      end
    RUBY
    spawn_fiber_job("-r", app, "--health-port", port.to_s, *args, log: File.join(dir, "worker.log"),
                    env: { "REDIS_URL" => redis_url })
  end

  it "answers /live and /ready; /ready turns 503 while Redis is down and /live stays 200" do
    server = RedisServer.new.start
    pid = start(server.url)
    wait_for(timeout: 10) { check("/ready").first == 200 && check("/live").first == 200 }
    expect(check("/live")).to eq([200, "live"])
    expect(check("/ready")).to eq([200, "ready"])
    expect(check("/nope").first).to eq(404)

    server.stop
    wait_for(timeout: 10, message: "/ready to fail") { check("/ready").first == 503 }
    expect(check("/ready").last).to include("heartbeat")
    expect(check("/live")).to eq([200, "live"])
    Process.kill("TERM", pid)
    wait_process(pid)
  ensure
    server&.cleanup
  end

  it "turns /live 503 while a job blocks the reactor, and back to 200 after it; /ready 503 when quiet" do
    pid = start(FiberJob.config.redis_url)
    wait_for(timeout: 10) { check("/live").first == 200 }
    FiberJob.const_get(:Internal)::Enqueue.push("StuckJob", [8])
    wait_for(timeout: 12, message: "/live to fail") { check("/live").first == 503 }
    expect(check("/live").last).to include("has not answered", "blocking its reactor")
    wait_for(timeout: 15, message: "/live to recover") { check("/live").first == 200 }

    Process.kill("TSTP", pid)
    wait_for(timeout: 5) { check("/ready") == [503, "not ready: quiet (TSTP)"] }
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
  end

  it "refuses a port that is taken, and --health-port with -P" do
    taken = TCPServer.new("0.0.0.0", port)
    log = File.join(dir, "taken.log")
    pid = spawn_fiber_job("--health-port", port.to_s, log: log)
    expect(wait_process(pid).exitstatus).not_to eq(0)
    expect(File.read(log)).to include("cannot serve health checks on 0.0.0.0:#{port}", "--health-port")
    log = File.join(dir, "swarm.log")
    pid = spawn_fiber_job("--health-port", port.to_s, "-P", "2", log: log)
    expect(wait_process(pid).exitstatus).not_to eq(0)
    expect(File.read(log)).to include("--health-port checks one process")
  ensure
    taken&.close
  end
end
