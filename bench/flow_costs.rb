# frozen_string_literal: true

# What each flow-control feature costs per job, FiberJob against itself: enqueueing
# 20,000 jobs one `perform_async` at a time, and running 20,000 no-op jobs through one
# worker (concurrency 10, default prefetch; first perform to last), for a plain class, a unique one
# (`unique_for`, distinct arguments) and an expiring one (`expires_in`). ROUNDS rounds,
# medians. Usage: ruby bench/flow_costs.rb  (N=20000 ROUNDS=3)
$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
$LOAD_PATH.unshift(File.expand_path("../spec", __dir__))
require "fiber_job"
require "redis"
require "support/redis_server"

N = Integer(ENV.fetch("N", "20000"))
ROUNDS = Integer(ENV.fetch("ROUNDS", "3"))
server = RedisServer.new.start
at_exit { server.cleanup }
redis = Redis.new(url: server.url)
FiberJob.configure do |c|
  c.redis_url = server.url
  c.queue_concurrency = { default: 10 }
  c.log_level = :warn
end

$done = 0
class PlainCost < FiberJob::Job
  def perform(_)
    $first ||= Process.clock_gettime(Process::CLOCK_MONOTONIC)
    return unless ($done += 1) == N

    $last = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    $worker.stop
  end
end

class UniqueCost < PlainCost
  unique_for 600
end

class ExpiringCost < PlainCost
  expires_in 600
end

clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
median = ->(xs) { xs.sort[xs.size / 2] }
puts "per job, #{N} jobs, median of #{ROUNDS}: enqueue (perform_async, one thread) / run (one worker, c10)"
[PlainCost, UniqueCost, ExpiringCost].each do |job|
  enq = []
  run = []
  ROUNDS.times do
    redis.flushdb
    t = clock.call
    N.times { |i| job.perform_async(i) }
    enq << (clock.call - t) / N
    $done = 0
    $first = nil
    $worker = FiberJob::Worker.new
    $worker.start
    run << ($last - $first) / N
  end
  puts format("  %-13s enqueue %6.1f µs   run %5.1f µs (%d jobs/s)", job.name, median[enq] * 1e6, median[run] * 1e6,
              1 / median[run])
end
