# frozen_string_literal: true

# Where W2's time goes: 20,000 jobs that `sleep 0.01` at concurrency 50 through one
# FiberJob worker (fiber executor, default settings), every job timestamped. Reports,
# per job on average: how late its 10 ms sleep ended (the reactor's timer and Ruby's
# sleep), the rest of its perform, and the gap on its worker fiber between the end of
# the previous job's perform and the start of this one (processor, ack, hand-off,
# dispatcher) — and what each costs of the ideal 5,000 jobs/s.
# Usage: ruby bench/w2_gaps.rb  (N=20000 CONC=50; PREFETCH=n to fix it)
$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
$LOAD_PATH.unshift(File.expand_path("../spec", __dir__))
require "fiber_job"
require "support/redis_server"

N = Integer(ENV.fetch("N", "20000"))
CONC = Integer(ENV.fetch("CONC", "50"))
SLEEP = 0.01
server = RedisServer.new.start
at_exit { server.cleanup }
FiberJob.configure do |c|
  c.redis_url = "redis://127.0.0.1:#{server.port}/0"
  c.queue_concurrency = { default: CONC }
  c.prefetch = ENV["PREFETCH"] ? Integer(ENV["PREFETCH"]) : :auto
  c.log_level = :warn
end

# One row per job: fiber, perform start, sleep start, sleep end, perform end.
ROWS = []
class GapJob < FiberJob::Job
  def perform(_)
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    s0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    sleep SLEEP
    s1 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    ROWS << [Fiber.current.object_id, t0, s0, s1, Process.clock_gettime(Process::CLOCK_MONOTONIC)]
    $worker.stop if ROWS.size == N
  end
end

N.times.each_slice(1000) { |s| GapJob.perform_bulk(s.map { |i| [i] }) }
$worker = FiberJob::Worker.new
cpu0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
$worker.start
cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - cpu0

ms = ->(sec) { format("%.3f ms", sec * 1000) }
first = ROWS.map { |r| r[1] }.min
last = ROWS.map { |r| r[4] }.max
elapsed = last - first
overshoot = ROWS.sum { |r| r[3] - r[2] - SLEEP } / N
rest = ROWS.sum { |r| (r[4] - r[1]) - (r[3] - r[2]) } / N
gaps = ROWS.group_by(&:first).values.flat_map do |rows|
  rows.sort_by { |r| r[1] }.each_cons(2).map { |a, b| b[1] - a[4] }
end
gap = gaps.sum / gaps.size
slot_time = elapsed * CONC / N # what one job took of a slot's time, on average
puts format("W2 gaps: %d jobs, concurrency %d, %.0f jobs/s = %.1f %% of ideal %d/s",
            N, CONC, N / elapsed, 100.0 * N / elapsed / (CONC / SLEEP), CONC / SLEEP)
puts "  per job, of #{ms.call(slot_time)} of a slot:"
puts "  sleep #{ms.call(SLEEP)} + overshoot #{ms.call(overshoot)} (#{format('%.1f', 100 * overshoot / slot_time)} %)"
puts "  rest of perform #{ms.call(rest)}"
puts "  gap between jobs on a worker fiber #{ms.call(gap)} (#{format('%.1f', 100 * gap / slot_time)} %; " \
     "p50 #{ms.call(gaps.sort[gaps.size / 2])}, p99 #{ms.call(gaps.sort[gaps.size * 99 / 100])})"
puts "  CPU of the worker process (every thread) #{ms.call(cpu / N)} per job"
puts "  unaccounted (slots with no worker fiber, start and end) " \
     "#{ms.call(slot_time - SLEEP - overshoot - rest - gap)}"
