# frozen_string_literal: true

class TraceClientMw
  def initialize(tag = "t")
    @tag = tag
  end

  def call(_job_class, payload, _queue)
    payload["trace_id"] = "#{@tag}-#{payload["args"].first}"
    yield
  end
end

class DropOddMw
  def call(_job_class, payload, _queue)
    yield if payload["args"].first.to_i.even?
  end
end

class BrokenClientMw
  def call(*)
    raise IOError, "client middleware broke"
  end
end

class RecordServerMw
  def call(job, payload, queue)
    Ran.record(:before, job.class.name, payload["trace_id"], queue)
    yield
    Ran.record(:after, job.jid)
  end
end

class BrokenServerMw
  def call(_job, payload, _queue)
    raise IOError, "server middleware broke" if payload["args"].first == "boom"

    yield
  end
end

class TracedJob < FiberJob::Job
  def perform(value)
    Ran.record(:perform, value)
  end
end

RSpec.describe "middleware" do
  before { Ran.reset! }

  describe FiberJob::Middleware::Chain do
    subject(:chain) { described_class.new }

    it "orders entries with add, prepend, insert_before, insert_after and remove" do
      a = Class.new { def call(*) = yield }
      b = Class.new { def call(*) = yield }
      c = Class.new { def call(*) = yield }
      chain.add(a).add(b)
      chain.insert_before(b, c)
      expect(chain.to_a).to eq([a, c, b])
      chain.insert_after(a, b)
      expect(chain.to_a).to eq([a, b, c])
      chain.prepend(c)
      expect(chain.to_a).to eq([c, a, b])
      chain.remove(a)
      expect(chain.to_a).to eq([c, b])
      expect(chain.exists?(b)).to be(true)
      expect(chain.exists?(a)).to be(false)
    end

    it "runs middleware outermost first, with constructor arguments, around the block" do
      order = []
      outer = Class.new do
        define_method(:initialize) { |tag| @tag = tag }
        define_method(:call) { |_x, &blk| order << @tag; blk.call; order << :"#{@tag}_out" }
      end
      chain.add(outer, :first)
      chain.add(Class.new(outer), :second)
      ran, value = chain.invoke(1) { order << :block; 42 }
      expect([ran, value]).to eq([true, 42])
      expect(order).to eq(%i[first second block second_out first_out])
    end

    it "rejects what is not a middleware class, naming it" do
      expect { chain.add(Object.new) }.to raise_error(ArgumentError, /class with an instance method #call/)
    end
  end

  it "client middleware changes payloads, stops jobs, and server middleware sees the changes" do
    FiberJob.configure do |c|
      c.client_middleware { |chain| chain.add(TraceClientMw, "req").add(DropOddMw) }
      c.server_middleware { |chain| chain.add(RecordServerMw) }
    end
    jid = TracedJob.perform_async(2)
    expect(TracedJob.perform_async(3)).to be_nil
    expect(TracedJob.perform_bulk([[4], [5]]).map(&:nil?)).to eq([false, true])
    stored = FiberJob::Queue.jobs(:default).map { |j| [j["args"], j["trace_id"]] }
    expect(stored).to eq([[[2], "req-2"], [[4], "req-4"]])

    with_worker { wait_for(message: "two jobs") { Ran.all.count { |r| r.first == :after } == 2 } }
    expect(Ran.all).to include([:before, "TracedJob", "req-2", "default"], [:perform, 2], [:after, jid])
    expect(Ran.all.count { |r| r.first == :perform }).to eq(2)
  end

  it "an exception in client middleware reaches the caller and enqueues nothing" do
    FiberJob.configure { |c| c.client_middleware { |chain| chain.add(BrokenClientMw) } }
    expect { TracedJob.perform_async(1) }.to raise_error(IOError, "client middleware broke")
    expect(FiberJob::Queue.stats(:default)[:size]).to eq(0)
  end

  it "an exception in server middleware is a failure of that job, never of the worker" do
    FiberJob.configure { |c| c.server_middleware { |chain| chain.add(BrokenServerMw) } }
    TracedJob.perform_async("boom")
    TracedJob.perform_async("fine")
    with_worker do
      wait_for(message: "failure record") { FiberJob::Queue.failed_jobs.any? }
      wait_for(message: "the good job") { Ran.all.include?([:perform, "fine"]) }
    end
    failure = FiberJob::Queue.failed_jobs.first
    expect(failure).to include("class" => "TracedJob", "error_class" => "IOError",
                               "error_message" => "server middleware broke")
    expect(FiberJob::Queue.retries.map { |j| j["args"] }).to eq([["boom"]])
    expect(Ran.all).not_to include([:perform, "boom"])
  end
end
