# frozen_string_literal: true

class ClientSpecJob < FiberJob::Job; end

class ClientSpecMw
  def call(_job_class, payload, _queue)
    payload["via"] = "middleware"
    yield
  end
end

# FiberJob.const_get(:Internal)::Enqueue: the fast path and the Ruby path make the same payloads (one
# builder), and every enqueue passes `deliver`.
RSpec.describe FiberJob.const_get(:Internal)::Enqueue do
  def queued = redis.lrange("fiber_job:queue:{default}", 0, -1).map { |j| JSON.parse(j) }

  it "builds the same payload on the fast path and through middleware" do
    fast_jid = ClientSpecJob.perform_async(1, "a")
    FiberJob.config.client_middleware.add(ClientSpecMw)
    slow_jid = ClientSpecJob.perform_async(1, "a")
    slow, fast = queued
    expect([fast["jid"], slow["jid"]]).to eq([fast_jid, slow_jid])
    expect(slow.keys).to eq(fast.keys + ["via"])
    expect(slow.reject { |k, _| %w[jid created_at enqueued_at via].include?(k) })
      .to eq(fast.reject { |k, _| %w[jid created_at enqueued_at].include?(k) })
    expect([fast_jid, slow_jid]).to all(match(/\A\h{24}\z/))
  end

  it "enqueues by class name, on a given queue, with extra fields after the core ones" do
    jid = described_class.push("ClientSpecJob", [2], queue: "other", extra: { wrapped: "Mailer", jid: "forged" })
    job = JSON.parse(redis.lrange("fiber_job:queue:{other}", 0, -1).first)
    expect(job).to include("class" => "ClientSpecJob", "args" => [2], "queue" => "other", "jid" => jid, "wrapped" => "Mailer")
    expect(job.keys.first(7)).to eq(%w[class args jid queue created_at enqueued_at retry_count])
  end

  it "runs a job scheduled in the past now, and stores a future one with its time" do
    ClientSpecJob.perform_at(Time.now - 60, 3)
    expect(queued.map { |j| j["args"] }).to eq([[3]])
    at = Time.now.to_f + 60
    ClientSpecJob.perform_at(at, 4)
    job, score = redis.zrange("fiber_job:schedule:{default}", 0, -1, with_scores: true).first
    expect(JSON.parse(job)["at"]).to be_within(0.001).of(at)
    expect(score).to be_within(0.001).of(at)
  end

  it "keeps its internals private" do
    %i[deliver write build plain? through].each do |name|
      expect(described_class.respond_to?(name)).to be(false), name.to_s
    end
  end
end
