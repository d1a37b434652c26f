# frozen_string_literal: true

# Iterable jobs: resumed from their checkpoint after TERM, kill -9, a failure, a
# requeue; real worker processes and signals.
RSpec.describe "iterable jobs (FiberJob::IterableJob)" do
  ITER_JOBS = <<~RUBY
    class SweepJob < FiberJob::IterableJob
      checkpoint_every iterations: 500, seconds: 30
      def build_enumerator(total, cursor:) = enumerator_for_range(0...total, cursor: cursor)
      def each_iteration(n, _total)
        sleep 0.0002
        Record.add(n)
      end
      def on_complete(total) = Record.add("done \#{total}")
    end
  RUBY

  before(:all) { eval(ITER_JOBS) } # rubocop:disable Security/Eval -- the same class, to enqueue it

  # Items processed (every record but "done"), and how many were processed twice.
  def processed
    items = records.reject { |r| r.start_with?("done") }.map(&:to_i)
    [items, items.size - items.uniq.size]
  end

  it "resumes after TERM at a random point: every item once, none repeated, and its progress is on its job page" do
    worker = start_workers(1, ITER_JOBS).first
    jid = SweepJob.perform_async(10_000)
    wait_for { records.size > 500 }
    sleep rand(0.1..1.0)
    Process.kill("TERM", worker.first)
    expect(wait_process(worker.first).exitstatus).to eq(0)
    stopped_at = processed.first.size
    progress = SweepJob.progress(jid)

    expect(progress).to include(iterations: stopped_at, cursor: stopped_at - 1)
    expect(FiberJob::Queue.find_job(jid)[:state]).to eq("enqueued") # given back, to the front

    require "fiber_job/web"
    env = Rack::MockRequest.env_for("/jobs/#{jid}")
    body = +""
    FiberJob::Web.call(env)[2].each { |chunk| body << chunk }
    expect(body).to include("Progress", "#{stopped_at.to_s.reverse.scan(/\d{1,3}/).join(",").reverse} items done, cursor #{stopped_at - 1}")

    start_workers(1, ITER_JOBS)
    wait_for(timeout: 30) { records.include?("done 10000") }
    items, repeats = processed
    puts "\n    10,000 items, TERM after #{stopped_at}: #{items.uniq.size} distinct processed, #{repeats} repeated"
    expect(items.uniq.sort).to eq((0...10_000).to_a)
    expect(repeats).to eq(0)
    expect(SweepJob.progress(jid)).to be_nil # finished: the checkpoint is gone
  end

  it "resumes after kill -9 from its last checkpoint: at most one checkpoint interval (500) repeated" do
    workers = start_workers(2, ITER_JOBS)
    wait_for { redis.scard("fiber_job:processes") == 2 }
    SweepJob.perform_async(10_000)
    wait_for { records.size > 1200 }
    sleep rand(0.0..0.5)
    pid = wait_for(message: "the busy worker") { FiberJob::Queue.processes.find { |p| p[:processing].positive? } }[:pid]
    Process.kill("KILL", pid)
    wait_process(pid)
    wait_for(timeout: 40) { records.include?("done 10000") }
    items, repeats = processed
    puts "\n    10,000 items, kill -9 mid-run: #{items.uniq.size} distinct processed, #{repeats} repeated (bound 500)"
    expect(items.uniq.sort).to eq((0...10_000).to_a)
    expect(repeats).to be <= 500
    stop_workers(workers.reject { |p, _| p == pid })
  end

  it "retries a failing iteration from its cursor, not from the start (both executors)" do
    stub_const("FlakySweepJob", Class.new(FiberJob::IterableJob) do
      def retry_delay(_) = 0.2
      def build_enumerator(cursor:) = enumerator_for_array(%w[a b c d e], cursor: cursor)
      def each_iteration(letter)
        raise "c fails once" if letter == "c" && retry_count.zero?

        Ran.record(letter)
      end
    end)
    %i[fiber thread].each do |executor|
      Ran.reset!
      FlakySweepJob.perform_async
      with_worker(executor: executor) { wait_for(timeout: 5) { Ran.calls.size == 5 } }
      expect(Ran.calls.flatten).to eq(%w[a b c d e])
    end
  end

  it "goes to the back of its queue after max_iteration_runtime, and stops cleanly when cancelled" do
    stub_const("LongSweepJob", Class.new(FiberJob::IterableJob) do
      max_iteration_runtime 0.3
      def build_enumerator(cursor:) = enumerator_for_range(1..40, cursor: cursor)
      def each_iteration(n)
        sleep 0.05
        Ran.record(n)
      end
    end)
    stub_const("EndlessJob", Class.new(FiberJob::IterableJob) do
      checkpoint_every iterations: 5
      def build_enumerator(cursor:) = enumerator_for_range(0.., cursor: cursor)
      def each_iteration(n) = sleep(0.01)
    end)
    Ran.reset!
    events = []
    FiberJob.on(:perform) { |e| events << e.job_class.name }
    LongSweepJob.perform_async
    endless = EndlessJob.perform_async
    with_worker(concurrency: 2) do
      wait_for(timeout: 10) { Ran.calls.size == 40 }
      expect(EndlessJob.progress(endless)[:iterations]).to be > 5
      EndlessJob.cancel(endless)
      wait_for(timeout: 5) { EndlessJob.progress(endless).nil? }
    end
    expect(Ran.calls.flatten).to eq((1..40).to_a)
    expect(events.count("LongSweepJob")).to eq(1) # the runs before were requeued, not finished
    expect(FiberJob::Queue.dead_jobs).to be_empty
  end
end
