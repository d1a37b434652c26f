# frozen_string_literal: true

# Limits per key (limits_concurrency, throttle) with real worker processes contending.
RSpec.describe "limits per key (limits_concurrency, throttle)" do
  # Jobs write "key start finish pid" (wall clock; every process is on this machine).
  LIMIT_JOBS = <<~RUBY
    class AccountJob < FiberJob::Job
      limits_concurrency to: 2, key: ->(account, *) { account }, lease: 30
      def perform(account, seconds)
        started = Time.now.to_f
        sleep seconds
        Record.add("\#{account} \#{started} \#{Time.now.to_f} \#{Process.pid}")
      end
    end

    class LeasedJob < FiberJob::Job
      limits_concurrency to: 2, lease: 2.5
      def perform(n)
        Record.add("start \#{n} \#{Time.now.to_f} \#{Process.pid}")
        sleep 1
        Record.add("finish \#{n} \#{Time.now.to_f} \#{Process.pid}")
      end
    end

    # Spins the CPU without yielding: the jobs taken with it start only when it ends.
    class HogJob < FiberJob::Job
      def perform(seconds)
        from = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        nil while Process.clock_gettime(Process::CLOCK_MONOTONIC) - from < seconds
      end
    end

    class BurstJob < FiberJob::Job
      throttle 5, per: 1, key: ->(*) { "burst" }
      def perform(n)
        Record.add("\#{n} \#{Time.now.to_f}")
      end
    end

    class StripeJob < FiberJob::Job
      throttle 20, per: 1, key: ->(user, *) { "stripe-\#{user}" }
      def perform(user, n)
        Record.add("\#{n} \#{Time.now.to_f}")
      end
    end
  RUBY

  before(:all) { eval(LIMIT_JOBS) } # rubocop:disable Security/Eval -- the same classes, to enqueue them

  # The most runs of one key at once, from their own start and finish times (a finish
  # at the same instant as a start counts first).
  def peak(runs)
    events = runs.flat_map { |start, finish| [[start, 1], [finish, -1]] }.sort_by { |t, d| [t, d] }
    events.reduce([0, 0]) { |(now, most), (_, d)| [now + d, [most, now + d].max] }.last
  end

  it "runs at most `to` jobs of a key at once across 3 processes, and every job: 200 jobs over 5 keys" do
    workers = start_workers(3, LIMIT_JOBS, config: "c.queue_concurrency = { default: 10 }")
    wait_for { redis.scard("fiber_job:processes") == 3 }
    rng = Random.new(16)
    200.times { |i| AccountJob.perform_async("acct-#{i % 5}", rng.rand(0.02..0.08)) }
    wait_for(timeout: 60, message: "200 jobs") { records.size == 200 }
    runs = records.map(&:split).group_by(&:first)
    peaks = runs.transform_values { |rs| peak(rs.map { |_, s, f| [s.to_f, f.to_f] }) }
    puts "\n    200 jobs over 5 keys, to: 2, 3 processes x 10: peak per key #{peaks.values.uniq.inspect}, " \
         "#{runs.values.flatten(1).map(&:last).uniq.size} processes ran them"
    expect(peaks).to eq((0...5).to_h { |i| ["acct-#{i}", 2] })
    expect(runs.values.map(&:size)).to eq([40] * 5)
    expect(redis.keys("fiber_job:cwait:*")).to be_empty
    expect(redis.zcard("fiber_job:flow-due:{default}")).to eq(0)
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0, 0])
  end

  it "frees the slots of a worker killed with -9 within the lease, and every job finishes" do
    workers = start_workers(2, LIMIT_JOBS, config: "c.queue_concurrency = { default: 5 }")
    wait_for { redis.scard("fiber_job:processes") == 2 }
    8.times { |n| LeasedJob.perform_async(n) }
    starts = -> { records.map(&:split).select { |r| r[0] == "start" } }
    wait_for { starts.call.size == 2 }
    holder = starts.call.first[3].to_i # the process running (at least) one of the two
    Process.kill("KILL", holder)
    killed_at = Time.now.to_f
    wait_process(holder)
    wait_for(timeout: 40, message: "8 jobs finished") { records.count { |r| r.start_with?("finish") } == 8 }
    rows = records.map(&:split)
    after = rows.select { |r| r[0] == "start" && r[2].to_f > killed_at }.map { |r| r[2].to_f - killed_at }
    puts "\n    kill -9 of a worker holding slots (lease 2.5 s): next start #{after.min.round(2)} s after the kill"
    expect(after.min).to be < 3.5 # within the lease; the reaper would take 5-6 s
    # Runs at once: a killed run ends at the kill.
    finishes = rows.select { |r| r[0] == "finish" }.to_h { |r| [[r[1], r[3]], r[2].to_f] }
    runs = rows.select { |r| r[0] == "start" }.map { |r| [r[2].to_f, finishes.fetch([r[1], r[3]], killed_at)] }
    expect(peak(runs)).to eq(2)
    expect(rows.select { |r| r[0] == "finish" }.map { |r| r[1] }.sort).to eq(("0".."7").to_a)
    stop_workers(workers.reject { |pid, _| pid == holder })
  end

  it "holds a slot for as long as its job runs, however short the lease (workers renew it)" do
    stub_const("LongJob", Class.new(FiberJob::Job) do
      limits_concurrency to: 1, lease: 2
      def perform(n)
        Ran.record(n, :start, Time.now.to_f)
        sleep 3.5
        Ran.record(n, :finish, Time.now.to_f)
      end
    end)
    Ran.reset!
    2.times { |n| LongJob.perform_async(n) }
    with_worker(concurrency: 4) { wait_for(timeout: 15) { Ran.calls.size == 4 } }
    first_finish, second_start = Ran.calls.find { |n, e, _| n == 0 && e == :finish }, Ran.calls.find { |n, e, _| n == 1 && e == :start }
    expect(second_start.last).to be > first_finish.last
  end

  # `busy` processes spin beside the workers, as on a loaded machine: jobs then start
  # up to 100s of ms after Redis admits them, and the promise is about their starts.
  def throttled_run(busy: 0)
    spinners = Array.new(busy) { spawn_ruby("loop { }").first }
    workers = start_workers(3, LIMIT_JOBS, config: "c.queue_concurrency = { default: 25 }")
    wait_for { redis.scard("fiber_job:processes") == 3 }
    enqueued = Time.now.to_f
    100.times { |n| StripeJob.perform_async(7, n) }
    StripeJob.perform_async(8, 100) # another key: not held back by user 7's
    wait_for(timeout: 40, message: "101 jobs") { records.size == 101 }
    starts = records.map(&:split).reject { |n, _| n == "100" }.map { |_, t| t.to_f }.sort
    busiest = starts.map { |s| starts.count { |t| t >= s && t < s + 1.0 } }.max
    took = starts.last - enqueued
    puts "\n    100 jobs throttled at 20/s over 3 processes#{busy.positive? ? ", #{busy} busy processes beside them" : ""}: " \
         "busiest 1-s window of starts #{busiest}, last start after #{took.round(2)} s"
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0, 0])
    spinners.each { |pid| Process.kill("KILL", pid) }
    [busiest, took]
  end

  it "throttles 100 jobs at 20 a second: no 1-second window of the jobs' own starts over 20, about 5 s in all" do
    busiest, took = throttled_run
    expect(busiest).to be <= 20
    expect(took).to be_between(3.9, 6.0)
  end

  it "keeps the throttle's promise on a loaded machine, measured by the jobs' own start times" do
    busiest, took = throttled_run(busy: 4)
    expect(busiest).to be <= 20
    expect(took).to be_between(3.9, 8.0)
  end

  # A job's start is logged when its perform begins, not when the engine hands it to
  # Ruby: taken behind a job that holds the CPU, five throttled jobs start 0.9 s late,
  # and the next five must still wait a whole window after them.
  it "counts a start when its perform begins, however long the job ahead of it in the process holds the CPU" do
    HogJob.perform_async(0.9)
    10.times { |n| BurstJob.perform_async(n) }
    workers = start_workers(1, LIMIT_JOBS, config: "c.prefetch = 20")
    wait_for(timeout: 20, message: "10 throttled jobs") { records.size == 10 }
    starts = records.map { |line| line.split[1].to_f }.sort
    busiest = starts.map { |s| starts.count { |t| t >= s && t < s + 1.0 } }.max
    expect(busiest).to be <= 5
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0])
  end

  it "composes: unique, throttled and concurrency-limited jobs on a paused queue, scheduled and retried" do
    stub_const("ComposedJob", Class.new(FiberJob::Job) do
      unique_for 60
      limits_concurrency to: 1, key: ->(account, *) { account }
      throttle 3, per: 1
      expires_in 60
      def initialize = (super; @queue = :composed)
      def priority_retry? = true
      def retry_delay(_attempt) = 0.3
      def perform(account, name)
        Ran.record(name, :start, Time.now.to_f, retry_count)
        sleep 0.2
        raise "first attempt of #{name} fails" if name == "a" && retry_count.zero?
        Ran.record(name, :finish, Time.now.to_f, retry_count)
      end
    end)
    Ran.reset!
    FiberJob::Queue.pause(:composed)
    expect(ComposedJob.perform_async(1, "a")).to be_a(String)
    expect(ComposedJob.perform_async(1, "a")).to be_nil # unique
    ComposedJob.perform_in(0.3, 1, "b")
    %w[c d e].each { |n| ComposedJob.perform_async(2, n) }
    with_worker(queues: ["composed"], concurrency: 10) do
      sleep 1.2
      expect(Ran.calls).to be_empty # paused
      FiberJob::Queue.resume(:composed)
      wait_for(timeout: 15) { Ran.calls.count { |_, e| e == :finish } == 5 }
      wait_for(message: "the lock freed at the ack") { ComposedJob.perform_async(1, "a") } # succeeded: unlocked
      wait_for(timeout: 5) { Ran.calls.count { |_, e| e == :finish } == 6 }
    end
    runs = Ran.calls.group_by(&:first)
    expect(runs["a"].map { |_, e, _, r| [e, r] }).to eq([[:start, 0], [:start, 1], [:finish, 1]] * 2) # a retry, twice
    by_account = { 1 => %w[a b], 2 => %w[c d e] }.transform_values { |ns| Ran.calls.select { |n, *| ns.include?(n) }.sort_by { |c| c[2] } }
    by_account.each_value do |events| # one at a time per account: start, (finish or failure), start, …
      starts = events.select { |_, e| e == :start }.map { |c| c[2] }
      expect(starts.each_cons(2).all? { |x, y| y - x >= 0.19 }).to be(true)
    end
    starts = Ran.calls.select { |_, e| e == :start }.map { |c| c[2] }.sort
    expect(starts.map { |t| starts.count { |u| u >= t && u < t + 1.0 } }.max).to be <= 3 # throttled
  end

  it "refuses bad settings and bad keys with an ArgumentError, before anything is written" do
    enqueue = ->(&body) { stub_const("BadLimitsJob", Class.new(FiberJob::Job, &body)).perform_async(1) }
    expect { enqueue.call { limits_concurrency(to: 0) } }
      .to raise_error(ArgumentError, /limits_concurrency to: takes a positive Integer/)
    expect { enqueue.call { limits_concurrency(to: 1, lease: 1) } }
      .to raise_error(ArgumentError, /lease: takes at least 2 seconds/)
    expect { enqueue.call { limits_concurrency(to: 1, key: :account) } }
      .to raise_error(ArgumentError, /key: takes a lambda/)
    expect { enqueue.call { throttle(5, per: 0) } }
      .to raise_error(ArgumentError, /throttle per: takes a positive number/)
    expect { enqueue.call { def initialize = (super; @throttle = 5) } }
      .to raise_error(ArgumentError, /@throttle must be a Hash/)
    stub_const("BadKeyJob", Class.new(FiberJob::Job) { limits_concurrency to: 1, key: ->(x) { x } })
    expect { BadKeyJob.perform_async([1]) }.to raise_error(ArgumentError, /key: returned \[1\]; return a String/)
    expect(redis.llen("fiber_job:queue:{default}")).to eq(0)
  end
end
