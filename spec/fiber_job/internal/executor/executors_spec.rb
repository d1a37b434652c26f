# frozen_string_literal: true

require "fiber_job/internal/executor/fiber_executor"
require "fiber_job/internal/executor/thread_executor"

class ExecSleepJob < FiberJob::Job
  def perform(seconds, tag)
    Ran.enter("exec")
    sleep seconds
    Ran.record(tag)
  ensure
    Ran.leave("exec")
  end
end

class ExecExitJob < FiberJob::Job
  def perform = exit(4)
end

# Both executors against a real engine: they run jobs up to the queue's limit at once,
# let running jobs finish at a stop (and interrupt and give back the rest after
# shutdown_timeout), and end with the exception that escaped a job, after the others.
RSpec.describe "executors" do
  before { Ran.reset! }

  {
    "FiberExecutor" => ->(native, timeout, _limit, &p) { FiberJob.const_get(:Internal)::Executor::FiberExecutor.new(native, timeout, &p) },
    "ThreadExecutor" => ->(native, timeout, limit, &p) { FiberJob.const_get(:Internal)::Executor::ThreadExecutor.new(native, timeout, limit, &p) }
  }.each do |name, build|
    describe name do
      def start(executor)
        Thread.new do
          executor.run
          :finished
        rescue SystemExit => e
          e
        end
      end


      def executor_for(native, build, timeout, limit)
        build.call(native, timeout, limit) do |hook|
          FiberJob.const_get(:Internal)::Processor.new(Logger.new(File::NULL), timeout: hook)
        end
      end

      it "runs up to the limit at once, and lets running jobs finish when stopped" do
        8.times { |i| queue_raw("ExecSleepJob", [0.2, "j#{i}"]) }
        with_native_worker(limit: 4) do |native|
          runner = start(executor_for(native, build, 5, 4))
          wait_for(message: "four at once") { Ran.peak("exec") == 4 && Ran.all.size >= 4 }
          native._stop
          expect(runner.join(10)&.value).to eq(:finished)
        end
        expect(Ran.peak("exec")).to eq(4)
        expect(Ran.all.size + redis.llen("fiber_job:queue:{default}")).to eq(8) # none lost
      end

      it "interrupts what still runs after shutdown_timeout and gives it back" do
        queue_raw("ExecSleepJob", [30, "long"])
        with_native_worker(limit: 1) do |native|
          runner = start(executor_for(native, build, 0.3, 1))
          wait_for(message: "running") { Ran.peak("exec") == 1 }
          native._stop
          expect(runner.join(10)&.value).to eq(:finished)
        end
        expect(Ran.all).to be_empty
        expect(redis.lrange("fiber_job:queue:{default}", 0, -1).map { |j| JSON.parse(j)["args"] }).to eq([[30, "long"]])
      end

      it "counts a job's exit as its failure, and goes on running jobs" do
        queue_raw("ExecExitJob")
        queue_raw("ExecSleepJob", [0.3, "after"])
        with_native_worker(limit: 1) do |native|
          runner = start(executor_for(native, build, 5, 1))
          wait_for(message: "the next job") { Ran.all == [["after"]] }
          expect(runner).to be_alive
          native._stop
          expect(runner.join(10)&.value).to eq(:finished)
        end
        retry_entry = JSON.parse(redis.zrange("fiber_job:retry:{default}", 0, -1).first)
        expect(retry_entry).to include("class" => "ExecExitJob", "retry_count" => 1, "error_class" => "SystemExit")
      end
    end
  end
end
