# frozen_string_literal: true

require_relative "../chaos/checker"
require_relative "../chaos/faults"

# The chaos run's checker (bin/chaos) on logs written here: it must find what it is
# there to find — a lost job, a duplicate no fault explains, each broken promise — and
# let pass what a fault explains.
RSpec.describe "Chaos::Checker" do
  let(:dir) { Dir.mktmpdir("fiber_job-checker") }
  let(:faults) { [] }
  let(:dead) { {} }
  let(:totals) { { processed: nil, failed: nil } }

  after { FileUtils.rm_rf(dir) }

  def log(*lines) = File.write(File.join(dir, "p-#{lines.object_id}.log"), lines.map { |l| "#{l}\n" }.join)

  def fault(kind, target, from, to = from) = Chaos::Faults::Done.new(kind, target, from, to, "")

  def check
    runs = Dir[File.join(dir, "*.log")].flat_map { |f| File.readlines(f) }.map(&:split)
    ok = runs.count { |f| f[0] == "F" && f[5] == "ok" }
    failed = runs.count { |f| f[0] == "F" && f[5] == "fail" }
    totals = { processed: self.totals[:processed] || ok, failed: self.totals[:failed] || failed }
    Chaos::Checker.new(dir, faults: faults, dead: dead, totals: totals).check
  end

  def found(result, kind) = result.findings.select { |k, _, _| k == kind }

  it "passes a clean run: every job enqueued ran once, counters agree" do
    log("E a ChaosJob - - 1.0", "E b ChaosJob - - 1.1")
    log("S a 0 10 2.0 ChaosJob -", "F a 0 10 2.1 ok", "S b 0 11 2.0 ChaosJob -", "F b 0 11 2.2 ok")
    result = check
    expect(result).to be_ok
    expect(result.summary).to eq("chaos: jobs=2 faults=0 lost=0 duplicates=0 unattributed=0 violations=0")
  end

  it "finds a job that never succeeded and is not in the dead set, and accepts one that is" do
    log("E a ChaosJob - - 1.0", "E b ChaosDoomed - - 1.0", "E c ChaosJob - - 1.0")
    log("S a 0 10 2.0 ChaosJob -", "F a 0 10 2.1 fail", "S c 0 10 2.0 ChaosJob -", "F c 0 10 2.1 ok")
    log(*(0..2).flat_map { |i| ["S b #{i} 10 #{3 + i}.0 ChaosDoomed -", "F b #{i} 10 #{3 + i}.1 fail"] })
    dead["b"] = "RuntimeError"
    result = check
    expect(result.counts[:lost]).to eq(1)
    expect(found(result, :lost).first[1]).to include("ChaosJob a")
    expect(result).not_to be_ok
  end

  it "attributes a second run to a kill of the first run's worker, and not to a dropped connection" do
    log("E a ChaosJob - - 1.0", "E b ChaosJob - - 1.0")
    log("S a 0 10 2.0 ChaosJob -", "S b 0 10 2.0 ChaosJob -", "F b 0 10 2.1 ok")
    log("S a 0 11 9.0 ChaosJob -", "F a 0 11 9.1 ok", "S b 0 11 9.0 ChaosJob -", "F b 0 11 9.1 ok")
    faults << fault(:worker_kill, 10, 2.5) << fault(:net_cut, 11, 2.0, 3.0)
    result = check
    expect(result.counts[:duplicates]).to eq(2)
    expect(result.counts[:unattributed]).to eq(0)

    faults.shift
    result = check
    expect(result.counts[:unattributed]).to eq(2)
    expect(result).not_to be_ok
  end

  it "finds more than the limit of a key running at once, and a throttle window over its limit" do
    log(*%w[a b c].map { |j| "E #{j} ChaosLimited l0 - 1.0" })
    log(*%w[a b c].flat_map { |j| ["S #{j} 0 10 2.0 ChaosLimited l0", "F #{j} 0 10 2.5 ok"] })
    starts = Array.new(Chaos::THROTTLE + 1) { |i| 5.0 + (i * 0.1) }
    log(*starts.each_with_index.flat_map { |t, i| ["E t#{i} ChaosThrottled t0 - 1.0", "S t#{i} 0 10 #{t} ChaosThrottled t0", "F t#{i} 0 10 #{t + 0.01} ok"] })
    result = check
    expect(found(result, :concurrency).size).to eq(1)
    expect(found(result, :throttle).size).to eq(1)
    expect(result.counts[:violations]).to eq(2)
  end

  it "counts a job that ran twice once in its throttle window: its second run is a duplicate, judged as one" do
    starts = Array.new(Chaos::THROTTLE) { |i| 5.0 + (i * 0.1) }
    log(*starts.each_with_index.flat_map { |t, i| ["E t#{i} ChaosThrottled t0 - 1.0", "S t#{i} 0 10 #{t} ChaosThrottled t0", "F t#{i} 0 10 #{t + 0.01} ok"] })
    log("S t0 0 10 5.001 ChaosThrottled t0", "F t0 0 10 5.01 ok")
    result = check
    expect(found(result, :throttle)).to be_empty
    expect(result.counts[:duplicates]).to eq(1)
    expect(result.counts[:unattributed]).to eq(1) # no fault explains it here
    expect(result).not_to be_ok
  end

  it "finds a scheduled job or a retry that started early" do
    offset = Time.now.to_f - Process.clock_gettime(Process::CLOCK_MONOTONIC)
    log("E a ChaosJob - #{offset + 10.0} 1.0", "S a 0 10 9.0 ChaosJob -", "F a 0 10 9.1 fail", "S a 1 10 9.5 ChaosJob -",
        "F a 1 10 9.6 ok")
    result = check
    expect(found(result, :early).map { |_, text, _| text }).to contain_exactly(
      a_string_including("before its due time"), a_string_including("retry 1 started")
    )
  end

  it "finds a unique key enqueued again while its job was pending, and a cron tick run twice" do
    log("E a ChaosUnique u1 - 1.0", "E b ChaosUnique u1 - 1.5", "S a 0 10 2.0 ChaosUnique u1", "F a 0 10 2.1 ok",
        "S b 0 10 2.2 ChaosUnique u1", "F b 0 10 2.3 ok")
    log("S k1 0 10 3.0 ChaosCron 1800000000", "F k1 0 10 3.1 ok", "S k2 0 11 3.0 ChaosCron 1800000000", "F k2 0 11 3.1 ok")
    result = check
    expect(found(result, :unique).size).to eq(1)
    expect(found(result, :cron_twice).size).to eq(1)
  end

  it "ends a run that started while its worker was being killed at the kill, and still finds two unique jobs at once" do
    # Worker 10 logs a's start just after the fault's clock read and before the signal
    # lands: a has no F line, and must not count as running for ever after.
    log("E a ChaosUnique u1 - 1.0", "E b ChaosUnique u1 - 5.0")
    log("S a 0 10 2.01 ChaosUnique u1")
    log("S a 0 11 3.0 ChaosUnique u1", "F a 0 11 3.1 ok", "S b 0 11 6.0 ChaosUnique u1", "F b 0 11 6.1 ok")
    faults << fault(:worker_kill, 10, 2.0, 2.05)
    result = check
    expect(found(result, :unique_overlap)).to be_empty
    expect(result).to be_ok

    log("E c ChaosUnique u2 - 1.0", "E d ChaosUnique u2 - 1.0", "S c 0 12 7.0 ChaosUnique u2", "F c 0 12 7.5 ok",
        "S d 0 11 7.2 ChaosUnique u2", "F d 0 11 7.3 ok")
    overlap = found(check, :unique_overlap)
    expect(overlap.size).to eq(1)
    expect(overlap.first[1]).to include("c (pid 12, 7.0", "d (pid 11, 7.2")
  end

  it "finds a batch callback run twice or before its jobs ended, and an iterable job resuming behind its cursor" do
    log("B x 2 1.0", "E m1 ChaosMember x - 1.0", "E m2 ChaosMember x - 1.0")
    log("S m1 0 10 2.0 ChaosMember x", "F m1 0 10 2.1 ok", "S m2 0 10 2.0 ChaosMember x", "F m2 0 10 3.0 ok")
    log("S c1 0 10 2.5 ChaosCallback x/complete", "F c1 0 10 2.6 ok", "S c2 0 10 3.5 ChaosCallback x/success",
        "F c2 0 10 3.6 ok", "S c3 0 11 3.5 ChaosCallback x/success", "F c3 0 11 3.6 ok")
    log("E i ChaosIterable - - 1.0", "S i 0 10 2.0 ChaosIterable -", "R i - 2.0", "F i 0 10 2.5 int",
        "S i 0 11 3.0 ChaosIterable -", "R i 9 3.0", "S i 0 12 4.0 ChaosIterable -", "R i 4 4.0",
        *(0...Chaos::ITEMS).map { |n| "I i #{n} 4.5" }, "F i 0 12 5.0 ok")
    result = check
    expect(found(result, :callback_twice).size).to eq(1)
    expect(found(result, :callback_early).size).to eq(1)
    expect(found(result, :cursor_back).size).to eq(1)
  end

  it "attributes a key over its limit to a frozen worker that ran one of those jobs, and an iterable resuming behind to a failover" do
    # a's first run is on worker 10, frozen; a runs again on 11, and 10's lease end
    # (when it comes back) lets two more of the key start beside it on 11.
    log(*%w[a b c].map { |j| "E #{j} ChaosLimited l0 - 1.0" })
    log("S a 0 10 2.0 ChaosLimited l0", "F a 0 10 9.5 ok")
    log("S a 0 11 9.0 ChaosLimited l0", "F a 0 11 10.0 ok", "S b 0 11 9.6 ChaosLimited l0", "F b 0 11 9.9 ok",
        "S c 0 11 9.6 ChaosLimited l0", "F c 0 11 9.8 ok")
    log("E i ChaosIterable - - 1.0", "S i 0 12 2.0 ChaosIterable -", "R i - 2.0", *(0...Chaos::ITEMS).map { |n| "I i #{n} 2.5" },
        "F i 0 12 3.0 ok", "S i 0 13 3.5 ChaosIterable -", "R i 4 3.5", "S i 0 12 4.0 ChaosIterable -", "R i - 4.0",
        "F i 0 13 4.5 ok", "F i 0 12 4.6 ok")
    result = check
    expect(found(result, :concurrency).map(&:last)).to eq([nil])
    expect(found(result, :cursor_back).map(&:last)).to eq([nil])
    faults << fault(:worker_stop, 10, 2.5, 9.4) << fault(:failover, "*", 2.2, 2.6)
    result = check
    expect(found(result, :concurrency).map { |f| f.last&.kind }).to eq([:worker_stop])
    expect(found(result, :cursor_back).map { |f| f.last&.kind }).to eq([:failover])
    expect(result.counts[:violations]).to eq(0)
  end

  it "finds counters that disagree with the runs, beyond the runs whose outcome a kill may have lost" do
    log("E a ChaosJob - - 1.0", "S a 0 10 2.0 ChaosJob -", "F a 0 10 2.1 ok", "S a 0 11 8.0 ChaosJob -", "F a 0 11 8.1 ok")
    faults << fault(:worker_kill, 10, 2.2)
    totals[:processed] = 1 # the killed worker's ack never reached Redis
    expect(found(check, :counter)).to be_empty
    totals[:processed] = 3
    expect(found(check, :counter).first[1]).to include("processed is 3")
  end

  it "pairs each end with its own run when one process runs an attempt twice at once" do
    # Worker 10 resumed after a stop: it runs the copy of f it held while the copy the
    # reaper put back, fetched again, starts beside it. Both failed, and both count.
    log("E f ChaosFlaky - - 1.0", "S f 0 10 5.0 ChaosFlaky -", "S f 0 10 5.01 ChaosFlaky -", "F f 0 10 5.03 fail",
        "F f 0 10 5.04 fail", "S f 1 10 6.1 ChaosFlaky -", "F f 1 10 6.2 ok")
    faults << fault(:worker_stop, 10, 1.0, 4.9)
    totals[:failed] = 2
    result = check
    expect(found(result, :counter)).to be_empty
    expect(result.counts[:failed_logged]).to eq(2)
    expect(result.counts[:duplicates]).to eq(1)
    expect(result).to be_ok
  end
end
