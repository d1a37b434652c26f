# frozen_string_literal: true

# A worker process of the chaos run (started by bin/chaos): both queues of the load
# mix, the executor CHAOS_EXECUTOR, every run logged by Chaos::Trace.
require_relative "jobs"

Chaos::Log.open("worker")
FiberJob.configure do |c|
  Chaos.connect(c)
  c.queues = %i[chaos flow]
  c.queue_concurrency = { chaos: 10, flow: 6 }
  c.executor = ENV.fetch("CHAOS_EXECUTOR", "fiber").to_sym
  c.shutdown_timeout = 2
  c.server_middleware { |chain| chain.add Chaos::Trace }
end
FiberJob::Worker.new.start
