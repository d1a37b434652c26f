# frozen_string_literal: true

# Workers whose wall clock is off by minutes (a VM with a drifting clock), run under
# Debian's libfaketime: their Time.now and the engine's SystemTime are shifted, their
# monotonic clock is not (FAKETIME_DONT_FAKE_MONOTONIC: tokio's timers stay real).
# Jobs record Process::CLOCK_MONOTONIC, one clock for every process of this machine,
# so starts are measured in real time whatever the worker's wall clock says.
RSpec.describe "workers whose clocks are off by minutes" do
  FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

  before { skip "libfaketime is not installed (bin/setup installs it)" unless File.exist?(FAKETIME_LIB) }

  def mono = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # A worker process whose wall clock is `offset` seconds off (0: the real clock).
  def start_skewed(offset, jobs, config: "")
    env = {}
    unless offset.zero?
      env = { "LD_PRELOAD" => FAKETIME_LIB, "FAKETIME" => format("%+d", offset),
              "FAKETIME_DONT_FAKE_MONOTONIC" => "1" }
    end
    spawn_ruby(<<~RUBY, env: env)
      #{WorkerProcesses::RECORD}
      #{jobs}
      FiberJob.configure { |c| #{config} }
      FiberJob::Worker.new.start
    RUBY
  end

  def wait_registered(count)
    wait_for(timeout: 15, message: "#{count} workers registered") { redis.scard("fiber_job:processes") == count }
  end

  # Records as [name, number, monotonic seconds].
  def recorded = records.map { |r| r.split.then { |name, n, at| [name, n, at.to_f] } }

  it "runs scheduled jobs and retries no earlier than due when a worker is 300 s ahead" do
    jobs = <<~RUBY
      class DueJob < FiberJob::Job
        def perform(i) = Record.add("due \#{i} \#{Process.clock_gettime(Process::CLOCK_MONOTONIC)}")
      end
      class FlakyJob < FiberJob::Job
        def retry_delay(_attempt) = 3
        def perform(i)
          now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
          if retry_count.to_i.zero?
            Record.add("failed \#{i} \#{now}")
            raise "first attempt fails"
          end
          Record.add("retried \#{i} \#{now}")
        end
      end
    RUBY
    stub_const("DueJob", Class.new(FiberJob::Job))
    stub_const("FlakyJob", Class.new(FiberJob::Job))
    workers = [start_skewed(0, jobs), start_skewed(300, jobs)]
    wait_registered(2)
    enqueued = {}
    8.times do |i|
      enqueued[i.to_s] = mono
      DueJob.perform_in(4, i)
      FlakyJob.perform_async(i)
      sleep 0.2
    end
    sleep 12 # every job due at 4 s, every retry at 3 s after its failure: all ran by now
    stop_workers(workers)
    runs = recorded
    due = runs.select { |name, _, _| name == "due" }.map { |_, i, at| at - enqueued.fetch(i) }
    failed = runs.select { |name, _, _| name == "failed" }.to_h { |_, i, at| [i, at] }
    retried = runs.select { |name, _, _| name == "retried" }.map { |_, i, at| at - failed.fetch(i) }
    puts format("\n    perform_in(4) with a worker 300 s ahead: %d/8 ran, started %s s after enqueue",
                due.size, due.map { |d| d.round(2) }.sort.inspect)
    puts format("    retry in 3 s with a worker 300 s ahead: %d/8 retried within 12 s, %s s after the failure",
                retried.size, retried.map { |d| d.round(2) }.sort.inspect)
    expect(due.size).to eq(8)
    expect(due.min).to be >= 4 - 0.5
    expect(due.max).to be < 4 + 2
    expect(retried.size).to eq(8)
    expect(retried.min).to be >= 3 - 0.5
    expect(retried.max).to be < 3 + 3
  end

  it "runs each cron tick once and on time when one worker is 120 s behind and one 300 s ahead" do
    jobs = <<~RUBY
      class EveryTwoSecondsJob < FiberJob::CronJob
        cron "*/2 * * * * *"
        def execute_cron_job = nil
      end
      class TickRecorder
        def call(_job, payload, _queue)
          Record.add("tick \#{payload['cron_tick']} \#{Process.clock_gettime(Process::CLOCK_MONOTONIC)}")
          yield
        end
      end
    RUBY
    config = "c.server_middleware { |chain| chain.add(TickRecorder) }"
    workers = [start_skewed(0, jobs, config: config), start_skewed(-120, jobs, config: config),
               start_skewed(300, jobs, config: config)]
    wait_registered(3)
    sleep 12
    statuses = stop_workers(workers)
    expect(statuses.map(&:exitstatus)).to eq([0, 0, 0])
    # Real wall time of a run: its monotonic time moved onto this process's wall clock.
    wall = Time.now.to_f - mono
    runs = recorded.map { |_, tick, at| [tick.to_i, at + wall] }
    ticks = runs.map(&:first)
    lateness = runs.map { |tick, at| at - tick }
    per_window = runs.group_by { |_, at| (at / 2).floor }.values.map(&:size)
    puts format("\n    cron */2 s, workers 0 / -120 / +300 s off, 12 s: %d runs, %d distinct ticks, " \
                "most runs in one 2-s window %d, run - tick from %.1f to %.1f s",
                runs.size, ticks.uniq.size, per_window.max.to_i, lateness.min.to_f, lateness.max.to_f)
    expect(runs.size).to be >= 5
    expect(ticks.uniq.size).to eq(ticks.size) # no tick ran twice
    expect(per_window.max).to eq(1)
    expect(lateness.min).to be >= -0.2 # not early
    expect(lateness.max).to be < 1.5 # not late
    expect(redis.hget("fiber_job:cron:last:{default}", "EveryTwoSecondsJob").to_i).to be >= ticks.max # the last-run hash
  end

  [300, -300].each do |offset|
    it "never recovers a live worker's running jobs from a worker #{offset.abs} s #{offset.positive? ? 'ahead' : 'behind'}" do
      jobs = <<~RUBY
        class LongJob < FiberJob::Job
          def perform(i)
            Record.add("start \#{i} \#{Process.clock_gettime(Process::CLOCK_MONOTONIC)}")
            sleep 7
          end
        end
      RUBY
      stub_const("LongJob", Class.new(FiberJob::Job))
      normal = start_skewed(0, jobs, config: "c.queue_concurrency = { default: 4 }")
      wait_registered(1)
      4.times { |i| LongJob.perform_async(i) }
      wait_for(timeout: 10, message: "4 jobs started") { records.size == 4 }
      skewed = start_skewed(offset, jobs, config: "c.queue_concurrency = { default: 4 }")
      wait_registered(2)
      sleep 9 # past the heartbeat TTL and the long jobs' end
      stop_workers([normal, skewed])
      starts = recorded.map { |_, i, _| i }
      puts format("\n    4 jobs of 7 s, a worker %+d s off beside: %d starts, %d duplicate(s)",
                  offset, starts.size, starts.size - starts.uniq.size)
      expect(starts.sort).to eq(%w[0 1 2 3])
    end
  end

  it "keeps a throttle of 5 per second across workers whose clocks disagree by minutes" do
    jobs = <<~RUBY
      class ThrottledJob < FiberJob::Job
        throttle 5, per: 1
        def perform(i) = Record.add("start \#{i} \#{Process.clock_gettime(Process::CLOCK_MONOTONIC)}")
      end
    RUBY
    stub_const("ThrottledJob", Class.new(FiberJob::Job) { throttle 5, per: 1 })
    workers = [start_skewed(0, jobs), start_skewed(300, jobs), start_skewed(-120, jobs)]
    wait_registered(3)
    40.times { |i| ThrottledJob.perform_async(i) }
    wait_for(timeout: 30, message: "40 throttled jobs ran") { records.size == 40 }
    stop_workers(workers)
    starts = recorded.map(&:last).sort
    busiest = starts.each_with_index.map { |at, i| starts[i..].take_while { |t| t < at + 1 }.size }.max
    took = starts.last - starts.first
    puts format("\n    throttle 5/s, workers 0 / +300 / -120 s off, 40 jobs: busiest 1-s window %d starts, all in %.1f s",
                busiest, took)
    expect(busiest).to be <= 5
  end
end
