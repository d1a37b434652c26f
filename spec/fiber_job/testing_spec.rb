# frozen_string_literal: true

require "fiber_job/testing"
# Requiring it switches to fake!; the rest of the suite talks to Redis.
FiberJob::Testing.disable!

class TestModeJob < FiberJob::Job
  def perform(x) = Ran.record(x)
end

# Test mode's switches and its one-job runner (spec/operations/testing_spec.rb covers
# the user-facing flows).
RSpec.describe FiberJob::Testing do
  before { Ran.reset! }
  after { described_class.disable! }

  it "switches modes, for a block or for good, and routes enqueues accordingly" do
    described_class.fake!
    TestModeJob.perform_async(1)
    expect(TestModeJob.jobs.map { |j| j["args"] }).to eq([[1]])
    described_class.inline! { TestModeJob.perform_async(2) }
    expect(described_class.fake?).to be(true)
    expect(Ran.all).to eq([[2]])
    described_class.disable!
    TestModeJob.perform_async(3)
    expect(redis.llen("fiber_job:queue:{default}")).to eq(1)
  ensure
    described_class.clear
  end

  it "runs a payload like a worker would, and refuses what names no job class" do
    described_class.perform("class" => "TestModeJob", "args" => [4], "jid" => "j", "retry_count" => 2)
    expect(Ran.all).to eq([[4]])
    expect { described_class.perform("class" => "Kernel", "args" => []) }
      .to raise_error(FiberJob::UnknownJobError, /"Kernel" is not a FiberJob::Job subclass/)
  end

  it "gives a batch's jobs its bid in fake mode, writing nothing to Redis and running no callback" do
    described_class.fake!
    batch = FiberJob::Batch.new(description: "fake")
    batch.on(:success, TestModeJob)
    batch.jobs { TestModeJob.perform_bulk([[1], [2]]) }
    TestModeJob.perform_async(3)
    expect(TestModeJob.jobs.map { |j| j["bid"] }).to eq([batch.bid, batch.bid, nil])
    expect(redis.keys("fiber_job:*")).to eq([])
    described_class.inline! { batch.jobs { TestModeJob.perform_async(4) } }
    expect(Ran.all).to eq([[4]])
  ensure
    described_class.clear
  end
end
