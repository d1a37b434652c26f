# frozen_string_literal: true

# A single Redis written by a FiberJob before per-queue dead sets, failure records and
# cron ticks: the first worker of this version moves every entry to its queue's key.
RSpec.describe "upgrading from the single-key layout" do
  it "moves the old dead set, failure records and last cron ticks into per-queue keys, losing nothing" do
    entry = ->(jid, queue) { JSON.generate("class" => "OldJob", "args" => [jid], "jid" => jid, "queue" => queue) }
    redis.zadd("fiber_job:dead", [[100.0, entry.call("d1", "mail")], [200.0, entry.call("d2", "default")]])
    redis.zadd("fiber_job:dead", 300.0, JSON.generate("class" => "OldJob", "args" => [], "jid" => "d3")) # no queue
    redis.rpush("fiber_job:failed", [entry.call("f2", "mail"), entry.call("f1", "reports")]) # newest first
    redis.hset("fiber_job:cron", "NightlyJob", JSON.generate("cron" => "0 3 * * *", "queue" => "reports"))
    redis.hset("fiber_job:cron:last", "NightlyJob", "1700000000")

    with_worker { wait_for(message: "the old keys gone") { !redis.exists?("fiber_job:dead") } }

    expect(redis.exists("fiber_job:failed", "fiber_job:cron:last")).to eq(0)
    expect(redis.zrange("fiber_job:dead:{mail}", 0, -1, with_scores: true)).to eq([[entry.call("d1", "mail"), 100.0]])
    expect(redis.zrange("fiber_job:dead:{default}", 0, -1).map { |e| JSON.parse(e)["jid"] }).to eq(%w[d2 d3])
    expect(redis.lrange("fiber_job:failed:{mail}", 0, -1)).to eq([entry.call("f2", "mail")])
    expect(redis.lrange("fiber_job:failed:{reports}", 0, -1)).to eq([entry.call("f1", "reports")])
    expect(redis.hgetall("fiber_job:cron:last:{reports}")).to eq("NightlyJob" => "1700000000")
    expect(FiberJob::Queue.dead_jobs.map { |d| d["jid"] }).to eq(%w[d3 d2 d1])
    expect(FiberJob::Queue.failed_jobs.map { |f| f["jid"] }).to contain_exactly("f1", "f2")
    expect(FiberJob::Queue.totals).to include(dead: 3, failure_records: 2)
  end
end
