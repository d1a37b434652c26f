# frozen_string_literal: true

# A client process of the chaos run (started by bin/chaos): enqueues the load mix, seeded
# by CHAOS_SEED, until TERM, logging every enqueue that returned a jid. An enqueue that
# raised (Redis down, full, failing over) is logged by class and tried again later with
# new arguments: a raise means nothing was stored.
require_relative "jobs"

Chaos::Log.open("client")
FiberJob.configure { |c| Chaos.connect(c) }

class ChaosClient
  MIX = { plain: 30, scheduled: 10, bulk: 3, flaky: 8, doomed: 2, unique: 8, limited: 10, throttled: 4,
          batch: 3, iterable: 2 }.freeze

  def initialize(seed)
    @rng = Random.new(seed)
    @kinds = MIX.flat_map { |kind, weight| [kind] * weight }
    @next_id = 0
    @errors = Hash.new(0)
    @stop = false
  end

  def stop! = @stop = true

  def run
    until @stop
      kind = @kinds[@rng.rand(@kinds.size)]
      begin
        send(kind)
      rescue FiberJob::Error => e
        @errors[e.class.name] += 1
        warn "chaos client: #{e.class}: #{e.message}" if @errors[e.class.name] == 1
        sleep 0.1
      end
      sleep @rng.rand * 0.04
    end
    warn "chaos client #{Process.pid} done: errors #{@errors}"
  end

  private

  def id = (@next_id += 1)

  # Mostly short, some long enough to be running when a fault strikes.
  def length_ms
    r = @rng.rand
    return @rng.rand(20) if r < 0.7
    return 20 + @rng.rand(180) if r < 0.95

    500 + @rng.rand(1500)
  end

  def log(jid, klass, key: "-", due: "-")
    Chaos::Log.write("E", jid, klass, key, due, Chaos::Log.now) if jid
  end

  def plain = log(ChaosJob.perform_async(id, length_ms), "ChaosJob")

  def scheduled
    delay = 0.2 + (@rng.rand * 4)
    due = Time.now.to_f + delay
    jid = @rng.rand < 0.5 ? ChaosJob.perform_in(delay, id, length_ms) : ChaosJob.perform_at(Time.at(due), id, length_ms)
    log(jid, "ChaosJob", due: due.round(6))
  end

  def bulk
    jids = ChaosJob.perform_bulk(Array.new(10 + @rng.rand(90)) { [id, @rng.rand(20)] })
    jids.each { |jid| log(jid, "ChaosJob") }
  end

  def flaky = log(ChaosFlaky.perform_async(id, @rng.rand(50)), "ChaosFlaky")
  def doomed = log(ChaosDoomed.perform_async(id), "ChaosDoomed")

  def unique
    key = "u#{@rng.rand(20)}"
    log(ChaosUnique.perform_async(key, length_ms), "ChaosUnique", key: key)
  end

  def limited
    key = "l#{@rng.rand(5)}"
    log(ChaosLimited.perform_async(key, length_ms), "ChaosLimited", key: key)
  end

  def throttled
    key = "t#{@rng.rand(3)}"
    log(ChaosThrottled.perform_async(key, @rng.rand(20)), "ChaosThrottled", key: key)
  end

  def batch
    batch = FiberJob::Batch.new(description: "chaos")
    batch.on(:complete, ChaosCallback)
    batch.on(:success, ChaosCallback)
    jids = []
    batch.jobs { (5 + @rng.rand(25)).times { jids << ChaosMember.perform_async(id, @rng.rand(50)) } }
    jids.each { |jid| log(jid, "ChaosMember", key: batch.bid) }
    Chaos::Log.write("B", batch.bid, jids.size, Chaos::Log.now)
  end

  def iterable = log(ChaosIterable.perform_async(id), "ChaosIterable")
end

client = ChaosClient.new(Integer(ENV.fetch("CHAOS_SEED")))
Signal.trap("TERM") { client.stop! }
client.run
