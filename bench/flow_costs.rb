# frozen_string_literal: true

# What each flow-control feature costs per job, FiberJob against itself: enqueueing
# 20,000 jobs one `perform_async` at a time, and running 20,000 no-op jobs through one
# worker (concurrency 10, default prefetch; first perform to last), for a plain class, a unique one
# (`unique_for`, distinct arguments), an expiring one (`expires_in`), a concurrency-limited
# one (`limits_concurrency`, one key per job: never over its limit) and a throttled one (a
# limit it never reaches), and one whose jobs are all in one batch (`Batch#jobs`): what
# each costs when it holds nothing back. ROUNDS rounds,
# medians. Usage: ruby bench/flow_costs.rb  (N=20000 ROUNDS=3 ONLY=LimitedCost,…);
# also Redis's CPU per job while the worker runs them (INFO cpu)
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

class LimitedCost < PlainCost
  limits_concurrency to: 2, key: ->(i) { i }
end

class ThrottledCost < PlainCost
  throttle 1_000_000, per: 1, key: ->(i) { i % 10 }
end

# Plain jobs, all members of one batch (FiberJob::Batch#jobs around the enqueues).
class BatchedCost < PlainCost; end

clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
median = ->(xs) { xs.sort[xs.size / 2] }
# Redis's own CPU seconds (user + system), for its share of a job's cost.
redis_cpu = -> { redis.info("cpu").values_at("used_cpu_user", "used_cpu_sys").sum(&:to_f) }
puts "per job, #{N} jobs, median of #{ROUNDS}: enqueue (perform_async, one thread) / run (one worker, c10)"
classes = [PlainCost, UniqueCost, ExpiringCost, LimitedCost, ThrottledCost, BatchedCost]
classes.select! { |c| ENV["ONLY"].split(",").include?(c.name) } if ENV["ONLY"]
classes.each do |job|
  enq = []
  run = []
  cpu = []
  ROUNDS.times do
    redis.flushdb
    t = clock.call
    if job == BatchedCost
      FiberJob::Batch.new.jobs { N.times { |i| job.perform_async(i) } }
    else
      N.times { |i| job.perform_async(i) }
    end
    enq << (clock.call - t) / N
    $done = 0
    $first = nil
    $worker = FiberJob::Worker.new
    cpu_before = redis_cpu.call
    $worker.start
    run << ($last - $first) / N
    cpu << (redis_cpu.call - cpu_before) / N
  end
  puts format("  %-13s enqueue %6.1f µs   run %5.1f µs (%d jobs/s), Redis CPU while running %4.1f µs", job.name,
              median[enq] * 1e6, median[run] * 1e6, 1 / median[run], median[cpu] * 1e6)
end
