# frozen_string_literal: true

# Batches: callbacks exactly once across real worker processes, with failures, deaths,
# kill -9, an abandoned `jobs` block, reopening from a job; a race loop.
RSpec.describe "batches (FiberJob::Batch)" do
  BATCH_JOBS = <<~RUBY
    class BatchRowJob < FiberJob::Job
      def retry_delay(_) = 0.1
      def perform(n, mode = "ok")
        sleep 0.001
        case mode
        when "flaky" then raise "fails once" if retry_count.zero?
        when "dies"
          self.max_retries = 0
          raise "dies"
        when "slow" then sleep 0.5
        end
        Record.add("row \#{n}")
      end
    end

    class BatchParentJob < FiberJob::Job
      def perform(children)
        batch.jobs { children.times { |i| BatchRowJob.perform_async(1000 + i) } }
        sleep 0.2
        Record.add("parent")
      end
    end

    class BatchCallbackJob < FiberJob::Job
      def perform(status, options)
        Record.add([status["event"], status["bid"], status["total"], status["pending"], status["failures"],
                    status["dead"], options["tag"]].join(" "))
      end
    end
  RUBY

  before(:all) { eval(BATCH_JOBS) } # rubocop:disable Security/Eval -- the same classes, to enqueue them

  def new_batch(tag = "t", description: "spec batch")
    FiberJob::Batch.new(description: description).tap do |b|
      %i[success complete death].each { |e| b.on(e, BatchCallbackJob, "tag" => tag) }
    end
  end

  # Callback records: [event, bid, total, pending, failures, dead, tag].
  def callbacks = records.grep(/\A(success|complete|death) /).map(&:split)

  def fired(bid) = callbacks.select { |c| c[1] == bid }.map(&:first).sort

  it "runs :complete and :death once and :success never for 1,000 jobs over 3 processes, one failing once, one dying" do
    workers = start_workers(3, BATCH_JOBS, config: "c.concurrency = 10")
    batch = new_batch
    batch.jobs do
      BatchRowJob.perform_bulk((0...998).map { |i| [i] })
      BatchRowJob.perform_async(998, "flaky")
      BatchRowJob.perform_async(999, "dies")
    end
    wait_for(timeout: 30) { fired(batch.bid) == %w[complete death] && records.grep(/\Arow /).size == 999 }
    sleep 0.5 # anything fired late would show now
    expect(fired(batch.bid)).to eq(%w[complete death])
    # total, pending, failures, dead, options: when it fired, the flaky job may not
    # have had its retry yet; every pending job had failed at least once.
    total, pending, failures, dead, tag = callbacks.find { |c| c[0] == "complete" }[2..6]
    expect([total, dead, tag]).to eq(%w[1000 1 t])
    expect(pending).to eq(failures)
    expect(%w[1 2]).to include(pending)
    expect(FiberJob::Batch.status(batch.bid)).to include(total: 1000, pending: 1, failures: 1, dead: 1, complete: true,
                                                         success: false, death: true, description: "spec batch")
    stop_workers(workers)
  end

  it "runs :success (and :complete) once for a clean batch; its jobs joined from perform_bulk and perform_in" do
    workers = start_workers(2, BATCH_JOBS)
    batch = new_batch("clean")
    batch.jobs do
      BatchRowJob.perform_bulk((0...50).map { |i| [i] })
      BatchRowJob.perform_in(0.5, 50)
    end
    wait_for(timeout: 20) { fired(batch.bid) == %w[complete success] }
    sleep 0.3
    expect(fired(batch.bid)).to eq(%w[complete success])
    success = callbacks.find { |c| c[0] == "success" }
    expect(success[2..6]).to eq(%w[51 0 0 0 clean])
    expect(FiberJob::Batch.status(batch.bid)).to include(success: true, pending: 0, total: 51)
    expect(FiberJob::Batch.jobs(batch.bid, limit: 100).map { |j| j[:state] }.uniq).to eq(["succeeded"])
    stop_workers(workers)
  end

  it "keeps callbacks once and totals right when a worker is killed -9 mid-batch" do
    workers = start_workers(3, BATCH_JOBS, config: "c.concurrency = 5")
    wait_for { redis.scard("fiber_job:processes") == 3 }
    batch = new_batch("kill")
    batch.jobs { BatchRowJob.perform_bulk((0...300).map { |i| [i, i % 10 == 0 ? "slow" : "ok"] }) }
    wait_for(timeout: 20) { records.grep(/\Arow /).size > 60 }
    victim = workers.first.first
    Process.kill("KILL", victim)
    wait_process(victim)
    wait_for(timeout: 40) { fired(batch.bid) == %w[complete success] }
    sleep 0.5
    expect(fired(batch.bid)).to eq(%w[complete success])
    expect(records.grep(/\Arow /).uniq.size).to eq(300)
    expect(FiberJob::Batch.status(batch.bid)).to include(total: 300, pending: 0, failures: 0)
    stop_workers(workers.drop(1))
  end

  it "fires each callback exactly once in 20 batches run back to back (a race loop)" do
    workers = start_workers(3, BATCH_JOBS, config: "c.concurrency = 10")
    bids = Array.new(20) do |round|
      batch = new_batch("r#{round}")
      batch.jobs do
        BatchRowJob.perform_bulk((0...30).map { |i| [i] })
        BatchRowJob.perform_async(30, "dies") if round.odd?
      end
      batch.bid
    end
    wait_for(timeout: 60) { bids.all? { |bid| fired(bid).include?("complete") } }
    sleep 0.5
    bids.each_with_index do |bid, round|
      expect(fired(bid)).to eq(round.odd? ? %w[complete death] : %w[complete success]), "round #{round}"
    end
    stop_workers(workers)
  end

  it "waits for jobs a batch job adds when it reopens its batch" do
    workers = start_workers(2, BATCH_JOBS)
    batch = new_batch("reopen")
    batch.jobs { BatchParentJob.perform_async(5) }
    wait_for(timeout: 20) { fired(batch.bid).include?("success") }
    expect(records.grep(/\Arow 10/).size).to eq(5)
    expect(fired(batch.bid)).to eq(%w[complete success])
    expect(FiberJob::Batch.status(batch.bid)).to include(total: 6, pending: 0)
    stop_workers(workers)
  end

  it "does not complete while its jobs block runs, and fires at the block's end when the jobs finished first" do
    workers = start_workers(1, BATCH_JOBS)
    batch = new_batch("open")
    batch.jobs do
      BatchRowJob.perform_async(1)
      BatchRowJob.perform_in(0.05, 2) # pushes the block's buffered jobs first
      wait_for { records.include?("row 1") && records.include?("row 2") }
      sleep 0.3
      expect(fired(batch.bid)).to eq([])
      expect(FiberJob::Batch.status(batch.bid)).to include(pending: 0, open: 1, success: false)
    end
    wait_for { fired(batch.bid) == %w[complete success] }
    stop_workers(workers)
  end

  it "completes an empty batch at once, and one whose block raised with the jobs it enqueued" do
    workers = start_workers(1, BATCH_JOBS)
    empty = new_batch("empty")
    empty.jobs {}
    wait_for { fired(empty.bid) == %w[complete success] }

    raised = new_batch("raised")
    expect { raised.jobs { BatchRowJob.perform_async(7) && raise("boom") } }.to raise_error(RuntimeError, "boom")
    wait_for { fired(raised.bid) == %w[complete success] }
    expect(FiberJob::Batch.status(raised.bid)).to include(total: 1)
    stop_workers(workers)
  end

  it "counts an abandoned jobs block (its process killed inside it) as ended once its lease is over" do
    workers = start_workers(1, BATCH_JOBS)
    pid, = spawn_ruby(<<~RUBY)
      #{WorkerProcesses::RECORD}
      #{BATCH_JOBS}
      batch = FiberJob::Batch.new(description: "abandoned")
      batch.on(:success, BatchCallbackJob, "tag" => "abandoned")
      batch.jobs do
        BatchRowJob.perform_in(0.05, 1)
        Record.add("inside \#{batch.bid}")
        sleep
      end
    RUBY
    wait_for { records.include?("row 1") && records.grep(/\Ainside /).any? }
    bid = records.grep(/\Ainside /).first.split.last
    Process.kill("KILL", pid)
    wait_process(pid)
    sleep 1.5
    expect(fired(bid)).to eq([]) # the block's lease (10 minutes) is not over
    # Ten minutes later: the block's deadline and the sweep time as they would be then.
    redis.zadd("fiber_job:batch-opens:{b:#{bid}}", [[Time.now.to_f - 1, redis.zrange("fiber_job:batch-opens:{b:#{bid}}", 0, 0).first]])
    redis.zadd("fiber_job:batch-sweep", [[Time.now.to_f - 1, bid]])
    wait_for(timeout: 10) { fired(bid) == %w[success] }
    expect(redis.zscore("fiber_job:batch-sweep", bid)).to be_nil
    stop_workers(workers)
  end

  it "forgets a unique duplicate and a job whose push failed; reports the batch's state and jobs" do
    stub_const("UniqueBatchJob", Class.new(FiberJob::Job) do
      unique_for 60
      def perform(_) = nil
    end)
    batch = FiberJob::Batch.new(description: "forget")
    jid = nil
    batch.jobs do
      jid = UniqueBatchJob.perform_async(1)
      expect(UniqueBatchJob.perform_async(1)).to be_nil
    end
    expect(FiberJob::Batch.status(batch.bid)).to include(total: 1, pending: 1)
    expect(FiberJob::Batch.jobs(batch.bid)).to eq([{ jid: jid, class: "UniqueBatchJob", state: "pending" }])

    # A push Redis refuses: the job is not in the batch either.
    redis.set("fiber_job:queue:{default}", "not a list")
    expect { batch.jobs { FiberJob.const_get(:Internal)::Enqueue.push("UniqueBatchJob", [2]) } }.to raise_error(FiberJob::Error)
    expect(FiberJob::Batch.status(batch.bid)).to include(total: 1, pending: 1)
    expect(FiberJob::Batch.status("nosuchbatch")).to be_nil

    redis.del("fiber_job:queue:{default}")
    short = FiberJob::Batch.new(description: "short", expires_in: 120)
    short.jobs { UniqueBatchJob.perform_async(3) }
    ttls = %w[batch batch-pending batch-jobs].map { |k| redis.ttl("fiber_job:#{k}:{b:#{short.bid}}") }
    expect(ttls).to all(be_between(100, 120))
    expect(redis.ttl("fiber_job:batch:{b:#{batch.bid}}")).to be > 29 * 86_400
  end

  it "lists batches newest first, a page at a time, with their states, dropping expired ones" do
    made = Array.new(4) do |i|
      FiberJob::Batch.new(description: "listed #{i}").tap { |b| b.jobs { BatchRowJob.perform_bulk([[i], [i + 10]]) } }
    end
    redis.del("fiber_job:batch:{b:#{made[1].bid}}") # as if it had expired
    page, total = FiberJob::Batch.list(offset: 0, limit: 2)
    expect(page.map { |s| s[:description] }).to eq(["listed 3", "listed 2"])
    expect(page.first).to include(bid: made[3].bid, total: 2, pending: 2, open: 0, complete: false)
    expect(total).to eq(4)
    page, total = FiberJob::Batch.list(offset: 2, limit: 2)
    expect(page.map { |s| s[:description] }).to eq(["listed 0"]) # "listed 1" is gone, and dropped from the index
    expect(total).to eq(3)
    expect(FiberJob::Batch.list(offset: 0, limit: 10).first.map { |s| s[:bid] }).to eq(made.values_at(3, 2, 0).map(&:bid))
  end

  it "refuses bad input with clear errors before writing anything" do
    batch = FiberJob::Batch.new
    expect { batch.on(:finished, BatchCallbackJob) }.to raise_error(ArgumentError, /:success, :complete, :death/)
    expect { batch.on(:success, String) }.to raise_error(ArgumentError, /FiberJob::Job subclass/)
    expect { batch.on(:success, BatchCallbackJob, "x" => Object.new) }.to raise_error(ArgumentError)
    expect { batch.jobs }.to raise_error(ArgumentError, /takes a block/)
    expect { FiberJob::Batch.new("bad id!") }.to raise_error(ArgumentError, /batch id/)
    expect { FiberJob::Batch.new(expires_in: -1) }.to raise_error(ArgumentError, /expires_in: takes a positive number/)
    expect { FiberJob::Batch.new(description: 5) }.to raise_error(ArgumentError, /description: takes a String/)
    expect { FiberJob::Batch.new("unknownbid").jobs {} }.to raise_error(FiberJob::Error, /unknown/)
    expect { FiberJob::Batch.status(nil) }.to raise_error(ArgumentError)
    expect(redis.keys("fiber_job:batch*")).to eq([])
    batch.jobs {}
    expect { batch.on(:success, BatchCallbackJob) }.to raise_error(ArgumentError, /before its first/)
  end
end
