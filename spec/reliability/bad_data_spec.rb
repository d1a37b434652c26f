# frozen_string_literal: true

RSpec.describe "bad data in a queue" do
  it "buries every bad payload with its reason, runs every good one, and never dies" do
    jobs = <<~RUBY
      class GoodJob < FiberJob::Job
        def perform(i) = Record.add(i)
      end
    RUBY
    bad = {
      "not json" => "not json at all",
      "a JSON array" => "[1,2,3]",
      "no class" => JSON.generate("args" => [], "jid" => "b1"),
      "no args" => JSON.generate("class" => "GoodJob", "jid" => "b2"),
      "args not an array" => JSON.generate("class" => "GoodJob", "args" => { "a" => 1 }, "jid" => "b3"),
      "unknown class" => JSON.generate("class" => "NoSuchJob", "args" => [], "jid" => "b4"),
      "Kernel" => JSON.generate("class" => "Kernel", "args" => [], "jid" => "b5"),
      "File" => JSON.generate("class" => "File", "args" => ["/etc/passwd"], "jid" => "b6"),
      "Object" => JSON.generate("class" => "Object", "args" => [], "jid" => "b7"),
      "code as a name" => JSON.generate("class" => "system('touch /tmp/pwned')", "args" => [], "jid" => "b8")
    }
    good = Array.new(200) { |i| JSON.generate("class" => "GoodJob", "args" => [i], "jid" => "g#{i}", "queue" => "default") }
    mixed = good.each_slice(20).zip(bad.values).flat_map { |g, b| [*g, b] }
    redis.lpush("fiber_job:queue:{default}", mixed.reverse)
    (pid, log), = start_workers(1, jobs)
    wait_for(timeout: 20) { records.size >= 200 && redis.zcard("fiber_job:dead") == bad.size }
    expect(Process.kill(0, pid)).to eq(1) # still alive
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)

    expect(records.map(&:to_i).sort).to eq((0...200).to_a)
    dead = FiberJob::Queue.dead_jobs(limit: 100)
    expect(dead.size).to eq(bad.size)
    expect(dead.map { |d| d["error"] }).to all(be_a(String).and(satisfy { |e| !e.empty? }))
    reasons = dead.map { |d| d["error"] }.join("\n")
    expect(reasons).to include("not valid JSON", "not a JSON object", "no 'class' field", "no 'args' field",
                               "'args' is not an array", '"NoSuchJob" is not a FiberJob::Job subclass',
                               '"Kernel" is not', '"File" is not', '"Object" is not')
    expect(dead.find { |d| d["payload"] == "not json at all" }).not_to be_nil # kept verbatim
    expect(File.exist?("/tmp/pwned")).to be(false)
    expect(File.read(log)).to include("moved to the dead set")
  end
end
