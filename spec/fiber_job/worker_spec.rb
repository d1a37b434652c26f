# frozen_string_literal: true

class WorkerSpecJob < FiberJob::Job
  def perform = nil
end

# FiberJob::Worker's settings: which queues, at what concurrency (resolved by
# Configuration, the one place), and what it refuses before starting.
RSpec.describe FiberJob::Worker do
  def concurrency_while_running(worker)
    thread = Thread.new { worker.start }
    wait_for(message: "the heartbeat") { FiberJob::Queue.processes.first }
    FiberJob::Queue.processes.first.values_at(:queues, :concurrency)
  ensure
    worker.stop
    thread.join(10)
  end

  it "works queue NAME:N at N, the rest at `concurrency`, else at the configuration's" do
    FiberJob.config.queue_concurrency = { "low" => 7 }
    worker = described_class.new(queues: ["high:5", "low", "default"], concurrency: 3)
    expect(concurrency_while_running(worker)).to eq([%w[high low default], [5, 3, 3]])
    worker = described_class.new(queues: %w[low default])
    expect(concurrency_while_running(worker)).to eq([%w[low default], [7, 2]])
    worker = described_class.new(queues: %w[low default], concurrency: { "default" => 4 })
    expect(concurrency_while_running(worker)).to eq([%w[low default], [7, 4]])
  end

  it "refuses bad settings before it starts, naming them" do
    expect { described_class.new(queues: ["bad name"]) }.to raise_error(FiberJob::ConfigurationError, /"bad name" is not a queue name/)
    expect { described_class.new(queues: []) }.to raise_error(FiberJob::ConfigurationError, /at least one queue/)
    expect { described_class.new(concurrency: 0) }.to raise_error(FiberJob::ConfigurationError, /concurrency must be a positive Integer/)
    expect { described_class.new(concurrency: { "x" => -1 }) }.to raise_error(FiberJob::ConfigurationError, /positive Integer/)
    expect { described_class.new(executor: :warp) }.to raise_error(FiberJob::ConfigurationError, /executor :warp/)
  end
end
