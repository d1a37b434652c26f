# frozen_string_literal: true

class ExpiringJob < FiberJob::Job
  expires_in 0.5

  def perform(n)
    Ran.record(n)
  end
end

class LongLivedJob < ExpiringJob
  expires_in 60
end

class InstanceExpiryJob < FiberJob::Job
  def initialize
    super
    @expires_in = 0.5
  end

  def perform(n)
    Ran.record(n)
  end
end

RSpec.describe "expiring jobs (expires_in)" do
  before { Ran.reset! }

  it "does not run a job not started by its deadline: counted, logged, in the dead set as expired" do
    jids = [ExpiringJob.perform_async(1), InstanceExpiryJob.perform_async(2)]
    jids += ExpiringJob.perform_bulk([[3], [4]])
    LongLivedJob.perform_async(5)
    payload = JSON.parse(redis.lindex("fiber_job:queue:{default}", -1))
    expect(payload["expires_at"]).to be_within(1).of(Time.now.to_f + 0.5)
    sleep 0.8
    with_worker { wait_for { Ran.calls == [[5]] && redis.zcard("fiber_job:dead:{default}") == 4 } }
    expect(Ran.calls).to eq([[5]]) # only the one within its deadline
    dead = FiberJob::Queue.dead_jobs
    expect(dead.map { |d| d["jid"] }).to match_array(jids)
    expect(dead.map { |d| d["error_class"] }.uniq).to eq(["FiberJob::Expired"])
    expect(dead.first["error_message"]).to match(/expired: not started by its deadline \(expires_in\), \d+\.\d+s late/)
    expect(FiberJob::Queue.metrics(["default"])["default"]).to include(expired: 4, processed: 1, failed: 0)

    # A person retrying it by hand wants it run: the deadline goes.
    FiberJob::Queue.retry_dead(jids.first)
    with_worker { wait_for { Ran.calls.include?([1]) } }
  end

  it "counts from the scheduled time for perform_in/perform_at, and runs jobs started in time" do
    with_worker do
      ExpiringJob.perform_in(1, 10)
      ExpiringJob.perform_async(11)
      wait_for(timeout: 5) { Ran.calls.size == 2 }
    end
    expect(Ran.calls).to match_array([[10], [11]])
    expect(FiberJob::Queue.metrics(["default"])["default"][:expired]).to eq(0)
  end

  it "refuses a deadline that is not a positive number of seconds, naming the class" do
    expect { Class.new(FiberJob::Job) { expires_in(0) } }.to raise_error(ArgumentError, /expires_in takes a positive number of seconds/)
    expect { Class.new(FiberJob::Job) { expires_in("1h") } }.to raise_error(ArgumentError, /got "1h"/)
  end
end
