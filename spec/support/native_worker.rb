# frozen_string_literal: true

# The engine of a worker (FiberJob.const_get(:Internal)::Native::Worker) started on the test Redis, for unit
# specs that drive it directly the way executors do: take a job, hand it to a
# Processor, look at what the engine wrote to Redis.
module NativeWorker
  def with_native_worker(limit: 5, queue: "default")
    config = FiberJob.config
    native = FiberJob.const_get(:Internal)::Native::Worker.new(
      connection: config.connection, prefix: config.prefix,
      identity: "spec:#{Process.pid}:#{rand(1 << 30)}", queues: [[queue, limit, 0]],
      sidekiq_compat: false, health: nil
    )
    native._start([], true)
    yield native
  ensure
    native&._stop
    native&._shutdown
  end

  # Waits for the engine to hand out one job; returns it (a Native::TakenJob).
  def take_one(native)
    wait_for(message: "a job to take") { native._take(1).first }
  end

  # Puts a raw job in a queue the way any producer could.
  def queue_raw(klass, args = [], queue: "default", **fields)
    payload = { "class" => klass, "args" => args, "jid" => SecureRandom.hex(12), "queue" => queue,
                "retry_count" => 0 }.merge(fields.transform_keys(&:to_s))
    raw_push(queue, JSON.generate(payload))
    payload["jid"]
  end
end
