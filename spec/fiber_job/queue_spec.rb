# frozen_string_literal: true

RSpec.describe FiberJob::Queue do
  it "reports real sizes" do
    stub_const("EnqueueJob", Class.new(FiberJob::Job)) unless defined?(EnqueueJob)
    3.times { |i| EnqueueJob.perform_async(i) }
    EnqueueJob.perform_in(60, 9)
    expect(described_class.stats(:default)).to eq(size: 3, scheduled: 1, processing: 0)
    expect(described_class.stats("other")).to eq(size: 0, scheduled: 0, processing: 0)
  end

  it "lists no failures on a fresh Redis" do
    expect(described_class.failed_jobs).to eq([])
  end
end
