# frozen_string_literal: true

class PauseEmailJob < FiberJob::Job
  def perform(n)
    Ran.record(n)
  end
end

RSpec.describe "pausing a queue" do
  before { Ran.reset! }

  it "keeps the state in Redis: pause, paused?, paused, resume" do
    expect(FiberJob::Queue.pause(:mail)).to be(true)
    expect(FiberJob::Queue.pause("mail")).to be(false) # already paused
    expect(FiberJob::Queue.paused?(:mail)).to be(true)
    expect(FiberJob::Queue.paused?(:default)).to be(false)
    FiberJob::Queue.pause(:bulk)
    expect(FiberJob::Queue.paused).to eq(%w[bulk mail])
    expect(FiberJob::Queue.metrics(%w[mail default]).transform_values { |m| m[:paused] }).to eq("mail" => true, "default" => false)
    expect(FiberJob::Queue.resume(:mail)).to be(true)
    expect(FiberJob::Queue.resume(:mail)).to be(false)
    expect(FiberJob::Queue.paused).to eq(%w[bulk])
    expect { FiberJob::Queue.pause("") }.to raise_error(ArgumentError)
  end

  it "stops every worker process from starting its jobs within a second, and resume starts them again" do
    jobs = <<~RUBY
      class PausedFlowJob < FiberJob::Job
        def perform(i)
          Record.add("\#{i} \#{Process.clock_gettime(Process::CLOCK_REALTIME)}")
          sleep 0.02
        end
      end
    RUBY
    payloads = Array.new(400) do |i|
      JSON.generate("class" => "PausedFlowJob", "args" => [i], "jid" => format("p%023d", i), "queue" => "default")
    end
    workers = start_workers(2, jobs, config: "c.queue_concurrency = { default: 3 }")
    wait_for { redis.scard("fiber_job:processes") == 2 }
    raw_push("default", payloads)
    wait_for(message: "jobs flowing") { records.size >= 30 }
    FiberJob::Queue.pause(:default)
    paused_at = Process.clock_gettime(Process::CLOCK_REALTIME)
    sleep 2
    started = records.map { |r| r.split.last.to_f }
    late = started.count { |t| t > paused_at + 1.0 }
    expect(late).to eq(0), "#{late} job(s) started more than 1 s after the pause"
    left = FiberJob::Queue.stats(:default)[:size]
    expect(left).to be > 0
    expect(FiberJob::Queue.metrics(["default"])["default"][:held]).to eq(0) # prefetched ones went back
    resumed_at = Process.clock_gettime(Process::CLOCK_REALTIME)
    FiberJob::Queue.resume(:default)
    wait_for(timeout: 30, message: "every job ran") { records.size == 400 }
    first_after = records.map { |r| r.split.last.to_f }.select { |t| t > resumed_at }.min
    expect(first_after - resumed_at).to be < 1.0
    expect(records.map { |r| r.split.first.to_i }.sort).to eq((0...400).to_a)
    puts format("\n    2 workers: paused with %d of 400 left, none started after it; resumed, the next started %.2fs later",
                left, first_after - resumed_at)
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0])
    workers.each do |_pid, log|
      expect(File.read(log)).to include('queue "default" is paused: no new job of it starts', 'queue "default" is resumed')
    end
  end

  it "stays paused across a worker's restart, and enqueueing goes on" do
    FiberJob::Queue.pause(:default)
    3.times { |i| PauseEmailJob.perform_async(i) }
    with_worker do
      sleep 1.5
      expect(Ran.calls).to be_empty
      expect(FiberJob::Queue.stats(:default)).to include(size: 3, processing: 0)
      FiberJob::Queue.resume(:default)
      wait_for(timeout: 3, message: "resumed jobs ran") { Ran.calls.size == 3 }
    end
    expect(Ran.calls).to match_array([[0], [1], [2]])
  end

  it "pauses only the queue named: the worker's other queues go on" do
    FiberJob.config.queues = %i[default other]
    FiberJob::Queue.pause(:other)
    class OtherQueueJob < PauseEmailJob
      def initialize
        super
        @queue = :other
      end
    end
    PauseEmailJob.perform_async(1)
    OtherQueueJob.perform_async(2)
    with_worker do
      wait_for { Ran.calls == [[1]] }
      sleep 1.2
      expect(Ran.calls).to eq([[1]])
      FiberJob::Queue.resume(:other)
      wait_for(timeout: 3) { Ran.calls.size == 2 }
    end
  end
end
