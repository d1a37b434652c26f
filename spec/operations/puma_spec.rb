# frozen_string_literal: true

require "net/http"

# `plugin :fiber_job`: a real Puma (Debian's 5.6) runs a FiberJob worker in each of its
# processes; HTTP requests enqueue, the embedded workers run the jobs, and Puma's stop
# (pumactl, TERM, a phased restart) loses none.
RSpec.describe "embedded in Puma (plugin :fiber_job)" do
  let(:dir) { Dir.mktmpdir("fiber_job-puma") }
  let(:port) { RedisServer.free_port }

  after { FileUtils.rm_rf(dir) }

  def boot(workers)
    File.write(File.join(dir, "config.ru"), <<~RUBY)
      require "fiber_job"
      FiberJob.configure do |c|
        c.redis_url = ENV.fetch("REDIS_URL")
        c.queue_concurrency = { default: 5 }
        c.shutdown_timeout = 10
      end
      class PumaJob < FiberJob::Job
        def perform(i)
          sleep 0.3
          FiberJob.const_get(:Internal).enqueue._push("record", ["done \#{i} \#{Process.pid}"])
        end
      end
      run lambda { |env|
        params = Rack::Request.new(env).params
        jids = Array.new(params["n"].to_i) { |k| PumaJob.perform_async(params["from"].to_i + k) }
        [200, { "content-type" => "text/plain" }, [jids.join(",")]]
      }
    RUBY
    File.write(File.join(dir, "puma.rb"), <<~RUBY)
      plugin :fiber_job
      workers #{workers}
      # Cluster workers boot their FiberJob worker before they load config.ru:
      # configure it here (or preload_app!).
      FiberJob.configure { |c| c.queue_concurrency = { default: 5 }; c.shutdown_timeout = 10 }
      threads 2, 2
      # A phased restart needs the app loaded in each worker (Puma 7+ preloads by default).
      preload_app! false
      bind "tcp://127.0.0.1:#{port}"
      pidfile #{File.join(dir, "puma.pid").dump}
      directory #{dir.dump}
    RUBY
    env = { "REDIS_URL" => FiberJob.config.redis_url, "RUBYLIB" => SpecHelpers::LIB }
    pid = Process.spawn(env, "puma", "-C", File.join(dir, "puma.rb"), File.join(dir, "config.ru"),
                        out: File.join(dir, "puma.log"), err: %i[child out], pgroup: true)
    (@spawned ||= []) << pid
    wait_for(timeout: 20, message: "puma to answer") { get(0, 0) }
    pid
  end

  def get(from, n)
    Net::HTTP.get(URI("http://127.0.0.1:#{port}/?from=#{from}&n=#{n}"))
  rescue Errno::ECONNREFUSED, Errno::ECONNRESET, EOFError
    nil
  end

  def done = records.grep(/\Adone /).map { |r| r.split[1].to_i }

  # Puma ends a graceful stop by re-raising TERM (its raise_exception_on_sigterm).
  def expect_stopped(status)
    expect(status.success? || status.termsig == Signal.list["TERM"]).to be(true), status.inspect
    expect(File.read(File.join(dir, "puma.log"))).to match(/Gracefully (stopping|shutting down workers)/)
  end

  # Every job enqueued ran or waits in its queue; none is held by a stopped process.
  def expect_none_lost(count)
    queued = FiberJob::Queue.jobs("default").map { |j| j["args"].first }
    expect((done + queued).uniq.sort).to eq((0...count).to_a)
    expect(held_keys).to eq([])
  end

  it "runs the jobs requests enqueue in single mode and stops with pumactl without losing one" do
    pid = boot(0)
    jids = get(0, 30).split(",")
    expect(jids.size).to eq(30)
    wait_for(timeout: 10) { done.size >= 5 }
    expect(system("pumactl", "-P", File.join(dir, "puma.pid"), "stop", out: File::NULL, err: File::NULL)).to be(true)
    expect_stopped(wait_process(pid, timeout: 30))
    puts "\n    single mode: 30 enqueued over HTTP, #{done.size} ran before pumactl stop, " \
         "#{FiberJob::Queue.jobs("default").size} back in the queue, 0 lost"
    expect(done.size).to be >= 5
    expect_none_lost(30)
    expect(File.read(File.join(dir, "puma.log"))).not_to include("Error")
  end

  it "runs a worker in each Puma worker, through a phased restart and TERM, without losing a job" do
    pid = boot(2)
    get(0, 40)
    wait_for(timeout: 15) { done.size >= 10 }
    expect(system("pumactl", "-P", File.join(dir, "puma.pid"), "phased-restart", out: File::NULL, err: File::NULL)).to be(true)
    get(40, 40)
    wait_for(timeout: 40, message: "all 80 to run") { done.uniq.size == 80 }
    pids = records.grep(/\Adone /).map { |r| r.split[2] }.uniq
    get(80, 20)
    Process.kill("TERM", pid)
    expect_stopped(wait_process(pid, timeout: 40))
    puts "\n    cluster mode: 100 enqueued, run by #{pids.size} Puma worker processes across a phased restart; " \
         "#{done.uniq.size} ran, #{FiberJob::Queue.jobs("default").size} back in the queue after TERM, 0 lost"
    expect(pids.size).to be >= 2
    expect_none_lost(100)
    log = File.read(File.join(dir, "puma.log"))
    expect(log).to include("Starting phased worker restart", "queues default=5", "shutdown_timeout 10s"), log
  end
end
