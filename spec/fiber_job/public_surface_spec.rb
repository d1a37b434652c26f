# frozen_string_literal: true

# What an app can name: the README's API. The engine and the Ruby that drives it live
# under FiberJob::Internal, a private constant, and a job class inherits only the
# class macros and enqueue methods the README documents.
RSpec.describe "FiberJob's public surface" do
  it "keeps the engine private" do
    expect { FiberJob::Internal }.to raise_error(NameError, /private constant FiberJob::Internal/)
    expect(FiberJob.constants).not_to include(:Native, :Processor, :Client, :Limits, :Arguments, :Executor)
    expect(FiberJob).not_to respond_to(:client)
    expect(FiberJob).not_to respond_to(:admin)
  end

  it "gives every job class only the documented class methods" do
    # FiberJob::Testing, once required, adds its own (jobs, drain, …): the README's too.
    testing = defined?(FiberJob::Testing::JobMethods) ? FiberJob::Testing::JobMethods.public_instance_methods : []
    expect(Class.new(FiberJob::Job).public_methods - Class.public_methods - testing)
      .to contain_exactly(:perform_async, :perform_in, :perform_at, :perform_bulk, :queue_name, :expires_in,
                          :unique_for, :unique_by, :enqueue_after_commit, :limits_concurrency, :throttle)
    expect(Class.new(FiberJob::CronJob).public_methods - FiberJob::Job.public_methods - testing)
      .to contain_exactly(:cron, :next_run, :all)
  end
end
