# frozen_string_literal: true

# Puma-style preload-then-fork: the parent loads the app and enqueues, then forks;
# each child enqueues and runs a worker of its own. Nothing (runtime, connections)
# may be shared across the fork by accident.
RSpec.describe "fork" do
  it "enqueues and works in forked children" do
    pid, out = spawn_ruby(<<~RUBY)
      class ForkJob < FiberJob::Job
        def perform(who) = FiberJob.const_get(:Internal).enqueue._push("done", [who])
      end
      ForkJob.perform_async("parent")
      children = 2.times.map do |i|
        fork do
          ForkJob.perform_async("child-\#{i}")
          w = FiberJob::Worker.new
          Thread.new { sleep 0.5 until FiberJob::Queue.stats(:default)[:size].zero?; sleep 0.2; w.stop }
          w.start
          exit!(0)
        end
      end
      statuses = children.map { |c| Process.wait2(c).last.exitstatus }
      puts "children: \#{statuses.inspect}"
    RUBY
    status = wait_process(pid, timeout: 60)
    expect(File.read(out)).to include("children: [0, 0]")
    expect(status.exitstatus).to eq(0)
    expect(redis.lrange("fiber_job:queue:{done}", 0, -1)).to contain_exactly("parent", "child-0", "child-1")
  end
end
