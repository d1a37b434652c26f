# frozen_string_literal: true

# `fiber_job -P N`: real processes, real signals.
RSpec.describe "fiber_job -P (swarm)" do
  let(:dir) { Dir.mktmpdir("fiber_job-swarm") }
  let(:app) { File.join(dir, "app.rb") }
  let(:log) { File.join(dir, "swarm.log") }

  before do
    stub_const("SwarmJob", Class.new(FiberJob::Job))
    File.write(app, <<~RUBY)
      require "fiber_job"
      $loaded_in = Process.pid
      class SwarmJob < FiberJob::Job
        def perform(label, seconds = 0)
          sleep(seconds)
          FiberJob.const_get(:Internal).enqueue._push("record", ["\#{label}:\#{Process.pid}:\#{$loaded_in}"])
        end
      end
    RUBY
  end

  after { FileUtils.rm_rf(dir) }

  # pids of the worker processes whose banner is in the log, in order of start
  def child_pids
    File.read(log).scan(/worker \S+?:(\d+):\h+ started:/).flatten.map(&:to_i)
  end

  # Running (a zombie an init that does not reap still lists counts as gone).
  def alive?(pid)
    File.read("/proc/#{pid}/status")[/^State:\s+(\S)/, 1] != "Z"
  rescue Errno::ENOENT, Errno::ESRCH
    false
  end

  def start_swarm(count)
    pid = spawn_fiber_job("-r", app, "-P", count.to_s, "-c", "5", "-t", "5", log: log)
    wait_for(timeout: 30, message: "#{count} banners") { child_pids.size >= count }
    pid
  end

  it "loads the app once, forks N workers, restarts one killed with -9, passes TSTP and TTIN on, and exits 0 on TERM" do
    parent = start_swarm(3)
    first = child_pids
    expect(first.uniq.size).to eq(3)
    expect(first).not_to include(parent)

    FiberJob.const_get(:Internal)::Enqueue.push_bulk(SwarmJob, 60.times.map { |i| ["j#{i}", 0.05] })
    wait_for(timeout: 20, message: "60 jobs") { records.size == 60 }
    workers, loaded_in = records.map { |r| r.split(":")[1, 2].map(&:to_i) }.transpose
    expect(loaded_in.uniq).to eq([parent]) # the app was loaded once, in the parent
    expect(workers.uniq - first).to be_empty
    expect(workers.uniq.size).to be > 1

    Process.kill("KILL", first[1])
    wait_for(timeout: 15, message: "a fourth banner") { child_pids.size == 4 }
    replacement = child_pids.last
    expect(File.read(log)).to match(/worker \d \(pid #{first[1]}\) killed by signal 9; restarting it/)
    expect([first[0], first[2], replacement].all? { |pid| alive?(pid) }).to be(true)

    Process.kill("TTIN", parent)
    wait_for(message: "3 TTIN dumps") { File.read(log).scan(/TTIN: \d+ job\(s\) running/).size == 3 }

    Process.kill("TSTP", parent)
    sleep 1.5 # the workers stop fetching
    SwarmJob.perform_async("after-quiet")
    sleep 2
    expect(records.grep(/after-quiet/)).to be_empty
    expect(redis.llen("fiber_job:queue:{default}")).to eq(1)

    Process.kill("TERM", parent)
    expect(wait_process(parent, timeout: 30).exitstatus).to eq(0)
    expect([first[0], first[2], replacement].none? { |pid| alive?(pid) }).to be(true)
    expect(File.read(log)).to include("all worker processes stopped")
    expect(redis.llen("fiber_job:queue:{default}")).to eq(1) # the quiet workers left it for the next ones
  end

  it "stops cleanly on Ctrl-C in a terminal (INT to the whole process group): each worker gets one signal" do
    parent = start_swarm(2)
    children = child_pids
    Process.kill("INT", -parent) # what a terminal does: the foreground process group
    expect(wait_process(parent, timeout: 30).exitstatus).to eq(0)
    expect(children.none? { |pid| alive?(pid) }).to be(true)
    log_text = File.read(log)
    expect(log_text.scan(/worker \d \(pid \d+\) exited with status 0/).size).to eq(2)
    expect(log_text).not_to include("shutdown interrupted")
  end

  it "stops its workers when the parent is killed with -9" do
    parent = start_swarm(2)
    children = child_pids
    Process.kill("KILL", parent)
    wait_process(parent)
    wait_for(timeout: 15, message: "orphaned workers to stop") { children.none? { |pid| alive?(pid) } }
    expect(File.read(log).scan(/worker \S+ stopped/).size).to eq(2)
  end

  it "rejects a non-positive -P with a usage error" do
    out = File.join(dir, "bad.log")
    pid = spawn_fiber_job("-r", app, "-P", "0", log: out)
    expect(wait_process(pid).exitstatus).to eq(2)
    expect(File.read(out)).to include("-P must be a positive number of processes, got 0")
  end
end
