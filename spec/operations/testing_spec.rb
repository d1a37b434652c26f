# frozen_string_literal: true

require "fiber_job/testing"
# Requiring it switches to fake!; the rest of the suite talks to Redis.
FiberJob::Testing.disable!

class GreetJob < FiberJob::Job
  def perform(name, times = 1)
    Ran.record(:greet, name, times)
    FollowUpJob.perform_async(name) if times > 1
  end
end

class FollowUpJob < FiberJob::Job
  def perform(name)
    Ran.record(:follow_up, name)
  end
end

RSpec.describe FiberJob::Testing do
  before { Ran.reset! }
  after { described_class.clear }

  it "fake! collects jobs per class, without Redis, and drains them" do
    described_class.fake! do
      jid = GreetJob.perform_async("ann", 2)
      GreetJob.perform_in(3600, "bob")
      expect(GreetJob.jobs.map { |j| j["args"] }).to eq([["ann", 2], ["bob"]])
      expect(GreetJob.jobs.first).to include("jid" => jid, "queue" => "default", "class" => "GreetJob")
      expect(GreetJob.jobs.last["at"]).to be > Time.now.to_f
      expect(FiberJob::Queue.stats(:default)[:size]).to eq(0)

      GreetJob.drain
      expect(GreetJob.jobs).to be_empty
      expect(FollowUpJob.jobs.size).to eq(1)
      described_class.drain
      expect(Ran.all).to eq([[:greet, "ann", 2], [:greet, "bob", 1], [:follow_up, "ann"]])
    end
  end

  it "fake! arguments go through JSON like production, and bad ones still raise" do
    described_class.fake! do
      original = { "list" => [1, 2.5, nil] }
      GreetJob.perform_async(original, 1)
      stored = GreetJob.jobs.first["args"]
      expect(stored).to eq([original, 1])
      expect(stored.first).not_to equal(original)
      expect { GreetJob.perform_async(:sym) }.to raise_error(ArgumentError, /Symbol, which does not survive JSON/)
      expect(GreetJob.jobs.size).to eq(1)
    end
  end

  it "clear, perform_one and Testing.jobs" do
    described_class.fake! do
      GreetJob.perform_async("a")
      GreetJob.perform_async("b")
      FollowUpJob.perform_async("c")
      expect(described_class.jobs.size).to eq(3)
      GreetJob.perform_one
      expect(Ran.all).to eq([[:greet, "a", 1]])
      GreetJob.clear
      expect(GreetJob.jobs).to be_empty
      expect(FollowUpJob.jobs.size).to eq(1)
      expect { GreetJob.perform_one }.to raise_error(FiberJob::Error, /no GreetJob job is enqueued/)
    end
  end

  it "inline! performs at once with JSON round-tripped arguments, through the server middleware" do
    mw = Class.new { def call(job, payload, queue) = (Ran.record(:mw, job.class.name, payload["jid"], queue) && yield) }
    FiberJob.configure { |c| c.server_middleware { |chain| chain.add(mw) } }
    described_class.inline! do
      jid = GreetJob.perform_async("carol", 1)
      expect(Ran.all).to eq([[:mw, "GreetJob", jid, "default"], [:greet, "carol", 1]])
      expect { GreetJob.perform_async(Time.now) }.to raise_error(ArgumentError)
    end
    expect(described_class.disabled?).to be(true)
  end

  it "disable! sends jobs to Redis; block forms restore the previous mode" do
    described_class.fake!
    described_class.disable! do
      GreetJob.perform_async("real")
      expect(FiberJob::Queue.stats(:default)[:size]).to eq(1)
    end
    expect(described_class.fake?).to be(true)
    GreetJob.perform_async("fake")
    expect(FiberJob::Queue.stats(:default)[:size]).to eq(1)
    expect(GreetJob.jobs.size).to eq(1)
  ensure
    described_class.disable!
  end
end
