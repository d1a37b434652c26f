# frozen_string_literal: true

# A signal with a trap (Puma's, a worker's TERM, an app's USR2) arriving while a Ruby
# thread waits for Redis inside FiberJob. Ruby interrupts the wait to run the trap; the
# trap runs at once, and the wait goes on unless the trap raised: the enqueue is not
# repeated (that would store its jobs twice) nor failed (it raised "interrupted while
# waiting for Redis" before, and a process that enqueued under signals died).
class TrapJob < FiberJob::Job
  def perform(*); end
end

RSpec.describe "a signal trap during a wait for Redis" do
  let(:server) { RedisServer.new.start }

  before do
    FiberJob.configure do |c|
      c.redis_url = server.url
      c.network_timeout = 5
    end
  end

  after do
    Signal.trap("USR2", "DEFAULT")
    server.resume
    server.cleanup
  end

  def monotonic = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # Runs the block while Redis is stopped for 0.6 s, with a USR2 at 0.2 s whose trap
  # runs `trap`. Returns the block's value or error, when the trap ran and when the
  # block returned (seconds after the start).
  def during_a_pause(trap = -> {})
    ran_at = nil
    started = monotonic
    Signal.trap("USR2") do
      ran_at = monotonic - started
      trap.call
    end
    server.pause
    helper = Thread.new do
      sleep 0.2
      Process.kill("USR2", Process.pid)
      sleep 0.4
      server.resume
    end
    result = begin
      yield
    rescue StandardError => e
      e
    end
    [result, ran_at, monotonic - started]
  ensure
    helper&.join
  end

  def queued_args = FiberJob::Queue.jobs(:default, limit: 10).map { |j| j["args"].first }.sort

  it "runs the trap at once and lets a direct enqueue finish, storing the job once" do
    TrapJob.perform_async(0) # this thread's direct connection exists now
    jid, ran_at, took = during_a_pause { TrapJob.perform_async(1) }
    expect(jid).to match(/\A\h{24}\z/)
    expect(ran_at).to be_between(0.15, 0.45) # during the wait, not once Redis answered
    expect(took).to be >= 0.55
    expect(queued_args).to eq([0, 1])
  end

  it "does the same for a call on the shared connection (a scheduled job)" do
    TrapJob.perform_in(60, 0) # connected
    jid, ran_at, took = during_a_pause { TrapJob.perform_in(60, 1) }
    expect(jid).to match(/\A\h{24}\z/)
    expect(ran_at).to be_between(0.15, 0.45)
    expect(took).to be >= 0.55
    expect(FiberJob::Queue.scheduled_jobs.map { |j| j["args"].first }.sort).to eq([0, 1])
  end

  it "ends the wait with what the trap raised" do
    TrapJob.perform_async(0)
    error, _, took = during_a_pause(-> { raise ArgumentError, "raised by the trap" }) { TrapJob.perform_async(1) }
    expect(error).to be_a(ArgumentError)
    expect(error.message).to eq("raised by the trap")
    expect(took).to be < 0.5
  end

  it "refuses, with a clear error, an enqueue made by the trap itself" do
    TrapJob.perform_async(0)
    error, = during_a_pause(-> { TrapJob.perform_async(2) }) { TrapJob.perform_async(1) }
    expect(error).to be_a(FiberJob::Error)
    expect(error.message).to match(/called from a signal trap that interrupted FiberJob's own wait.*Thread\.new/)
    wait_for { queued_args.include?(1) || queued_args == [0] } # the interrupted push may have landed
    expect(queued_args).not_to include(2)
  end
end
