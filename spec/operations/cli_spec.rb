# frozen_string_literal: true

require "open3"

RSpec.describe "the fiber_job command" do
  let(:dir) { Dir.mktmpdir("fiber_job-cli") }
  let(:app) { File.join(dir, "app.rb") }

  before do
    File.write(app, <<~RUBY)
      require "fiber_job"
      class CliJob < FiberJob::Job
        def perform(label, seconds = 0)
          sleep(seconds)
          FiberJob.const_get(:Internal).enqueue._push("record", [label])
        end
      end
    RUBY
  end

  after { FileUtils.rm_rf(dir) }

  def run_cli(*args, env: {})
    Open3.capture3({ "REDIS_URL" => FiberJob.config.redis_url }.merge(env), RbConfig.ruby, SpecHelpers::EXE, *args)
  end

  # Starts a worker as a real process; returns [pid, log path].
  def start_cli(*args, env: {})
    log = File.join(dir, "worker-#{rand(1 << 30)}.log")
    pid = spawn_fiber_job(*args, log: log, env: env)
    wait_for(message: "worker banner") { File.read(log).include?("started:") }
    [pid, log]
  end

  it "prints its version and help, and exits 0" do
    out, _, status = run_cli("version")
    expect([out, status.exitstatus]).to eq(["fiber_job #{FiberJob::VERSION}\n", 0])
    out, _, status = run_cli("help")
    expect(status.exitstatus).to eq(0)
    expect(out).to include("-q, --queue LIST", "-c, --concurrency N", "-C, --config FILE", "TTIN")
  end

  it "exits 2 with a clear message for unknown flags, missing files and bad values" do
    [
      [["--bogus"], /invalid option: --bogus/],
      [["-r", "/no/such/app.rb"], /no such file to load: \/no\/such\/app.rb/],
      [["-r", dir], /directory without config\/environment.rb/],
      [["-C", "/no/such.yml", "-r", app], /no such config file/],
      [["-c", "many", "-r", app], /invalid argument: -c many/],
      [["-x", "processes", "-r", app], /executor "processes" is not one of/],
      [%w[frobnicate], /unknown command "frobnicate"/]
    ].each do |args, message|
      _, err, status = run_cli(*args)
      expect(status.exitstatus).to eq(2), "#{args.inspect} exited #{status.exitstatus}: #{err}"
      expect(err).to match(message)
      expect(err).not_to include(".rb:") # a message, not a backtrace
    end
  end

  it "works the queues given with -q and -c, and stops on TERM with exit 0" do
    FiberJob.const_get(:Internal)::Enqueue.push(CliTestJob, ["a"], queue: "high")
    FiberJob.const_get(:Internal)::Enqueue.push(CliTestJob, ["b"], queue: "low")
    pid, log = start_cli("-r", app, "-q", "high:3,low", "-c", "4", "-t", "5")
    expect(File.read(log)).to match(/queues high=3, low=4 \(concurrency 7\), executor fiber/)
    wait_for(message: "both jobs") { records.sort == %w[a b] }
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
    expect(File.read(log)).to include("stopped")
  end

  it "reads settings from -C with environment sections, flags winning, and masks the Redis password" do
    secured = RedisServer.new(args: ["--requirepass", "s3cret"]).start
    url = "redis://:s3cret@127.0.0.1:#{secured.port}/0"
    config = File.join(dir, "fiber_job.yml")
    File.write(config, <<~YAML)
      concurrency: 2
      queues: [default]
      production:
        redis_url: <%= ENV.fetch("SECURED_URL") %>
        queues: [critical, default]
        queue_concurrency: { critical: 6 }
        shutdown_timeout: 9
    YAML
    pid, log = start_cli("-r", app, "-C", config, "-e", "production", "-t", "3", env: { "SECURED_URL" => url })
    banner = File.read(log)
    expect(banner).to match(/queues critical=6, default=2/)
    expect(banner).to include("redis redis://:***@127.0.0.1:#{secured.port}/0", "shutdown_timeout 3.0s")
    expect(banner).not_to include("s3cret")
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
  ensure
    secured&.cleanup
  end

  %w[fiber thread].each do |executor|
    it "logs every running job's backtrace on TTIN (#{executor} executor), then stops cleanly" do
      FiberJob.const_get(:Internal)::Enqueue.push(CliTestJob, ["slow", 30], queue: "default")
      pid, log = start_cli("-r", app, "-t", "1", "-x", executor)
      wait_for(message: "job start") { File.read(log).include?("INFO: start") }
      Process.kill("TTIN", pid)
      # Ruby 3.4 writes backtraces as "in 'CliJob#perform'", older ones "in `perform'".
      wait_for(message: "TTIN dump") { File.read(log).match?(/in [`'](\w+#)?perform'/) }
      dump = File.read(log)
      expect(dump).to match(/TTIN: 1 job\(s\) running/)
      expect(dump).to match(/TTIN: CliJob jid=\h+ queue=default running [\d.]+s/)
      expect(dump).to match(/app\.rb:4:in [`'](Kernel#)?sleep'/)
      Process.kill("TERM", pid)
      expect(wait_process(pid).exitstatus).to eq(0)
      # The interrupted job went back to its queue.
      expect(FiberJob::Queue.jobs(:default).map { |j| j["args"] }).to eq([["slow", 30]])
    end
  end

  it "goes quiet on TSTP: running jobs finish, nothing new starts" do
    FiberJob.const_get(:Internal)::Enqueue.push(CliTestJob, ["first", 1], queue: "default")
    pid, log = start_cli("-r", app)
    wait_for(message: "job start") { File.read(log).include?("INFO: start") }
    Process.kill("TSTP", pid)
    sleep 0.2
    FiberJob.const_get(:Internal)::Enqueue.push(CliTestJob, ["second"], queue: "default")
    wait_for(message: "first job") { records == ["first"] }
    sleep 1.5
    expect(records).to eq(["first"])
    expect(FiberJob::Queue.stats(:default)[:size]).to eq(1)
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
  end

  it "loads a Rails app root given with -r (config/environment.rb)" do
    FileUtils.mkdir_p(File.join(dir, "rails_app", "config"))
    File.write(File.join(dir, "rails_app", "config", "environment.rb"), <<~RUBY)
      require_relative "../../app"
      FiberJob.const_get(:Internal).enqueue._push("record", ["environment loaded"])
    RUBY
    pid, = start_cli("-r", File.join(dir, "rails_app"))
    wait_for(message: "environment") { records == ["environment loaded"] }
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
  end
end

# The parent's handle on the class the CLI's app defines (same name, same queue).
class CliTestJob < FiberJob::Job
  def self.name = "CliJob"
end
