# frozen_string_literal: true

# Scale benchmarks, FiberJob and Sidekiq side by side where Sidekiq can run:
#   W10  an idle worker with 200 queues: connections it holds, commands/s it makes
#        Redis run (FiberJob vs Sidekiq -q ×200)
#   W11  no-op jobs on 3 queues with 1, 2 and 4 worker processes on one Redis
#        (FiberJob vs Sidekiq), and FiberJob on a 3-master Redis Cluster with the
#        queues on different masters (Sidekiq refuses a Cluster)
# Usage: ruby bench/scale.rb [W10] [W11]  (ROUNDS=3); bench/run W10 W11 calls it.
require "json"
require "socket"
require "tmpdir"
require "fileutils"
require "timeout"
$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
$LOAD_PATH.unshift(File.expand_path("../spec", __dir__))
require "fiber_job"
require_relative "stack"
require "sidekiq"
require "redis"
require "support/redis_server"
require "support/cluster_group"
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

BENCH = __dir__
ROUNDS = Integer(ENV.fetch("ROUNDS", "3"))
JOBS = Integer(ENV.fetch("JOBS", "300000"))
CONC_PER_QUEUE = 10
SERVERS = []
WORKERS = []
at_exit do
  WORKERS.each { |pid| stop(pid) }
  SERVERS.each(&:cleanup)
end

def mono = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def stop(pid)
  Process.kill("TERM", pid)
  Timeout.timeout(30) { Process.wait(pid) }
rescue Timeout::Error
  Process.kill("KILL", pid)
  Process.wait(pid)
rescue Errno::ESRCH, Errno::ECHILD
  nil
ensure
  WORKERS.delete(pid)
end

def median(values) = values.sort[values.size / 2]

# Starts a FiberJob or Sidekiq worker process for `queues`; `target` is a URL or a
# list of Cluster seed URLs.
def start_worker(system, target, queues, processes: 1, sidekiq_threads: CONC_PER_QUEUE * queues.size)
  env = { "QUEUES" => queues.join(","), "CONC" => CONC_PER_QUEUE.to_s }
  env[target.is_a?(Array) ? "CLUSTER" : "REDIS_URL"] = Array(target).join(",")
  pid = if system == :fiber_job
          Process.spawn(BenchStack.worker_env(env), RbConfig.ruby, File.join(BENCH, "scale_worker.rb"), processes.to_s,
                        out: File::NULL)
        else
          Process.spawn(BenchStack.worker_env(env),
                        *BenchStack.sidekiq_command("-r", File.join(BENCH, "scale_worker.rb"), "-c", sidekiq_threads.to_s,
                                                    *queues.flat_map { |q| ["-q", q] }),
                        out: File::NULL, err: File::NULL)
        end
  WORKERS << pid
  pid
end

def wait_registered(redis, system, processes)
  key = system == :fiber_job ? "fiber_job:processes" : "processes"
  Timeout.timeout(60) { sleep 0.05 until redis.scard(key) >= processes }
end

# W10: one idle worker with 200 queues (Sidekiq at its default 10 threads), one round.
def idle_cost(system, url, redis)
  redis.flushdb
  queues = Array.new(200) { |i| "q#{i}" }
  before_clients = redis.info("clients")["connected_clients"].to_i
  pid = start_worker(system, url, queues, sidekiq_threads: 10)
  wait_registered(redis, system, 1)
  sleep 65 # settle into waiting (FiberJob's idle backstop grows to 60 s)
  clients = redis.info("clients")["connected_clients"].to_i - before_clients
  c0 = redis.info("stats")["total_commands_processed"].to_i
  t0 = mono
  sleep 60 # one whole backstop period
  c1 = redis.info("stats")["total_commands_processed"].to_i
  per_s = (c1 - c0 - 1) / (mono - t0) # less our own INFO
  stop(pid)
  { clients: clients, commands_per_s: per_s }
end

class ScaleJob < FiberJob::Job; end

class ScaleSidekiqJob
  include Sidekiq::Worker
end

# W11 round: JOBS no-op jobs spread over `queues`, `processes` workers; jobs/s from the
# start of the enqueue until FiberJob's processed counter reaches JOBS (Sidekiq: until
# its queues are empty, which favours it by the few jobs still running).
def throughput(system, target, redis, queues, processes)
  redis.flushdb if redis.respond_to?(:flushdb) && !target.is_a?(Array)
  pids = Array.new(system == :fiber_job ? 1 : processes) do
    start_worker(system, target, queues, processes: system == :fiber_job ? processes : 1)
  end
  wait_registered(redis, system, processes)
  sleep 0.5
  per_queue = JOBS / queues.size
  cpu0 = redis_cpu(target)
  t0 = mono
  queues.each do |q|
    per_queue.times.each_slice(1000) do |slice|
      if system == :fiber_job
        FiberJob.const_get(:Internal)::Enqueue.push_bulk(ScaleJob, slice.map { |i| [i] }, queue: q)
      else
        Sidekiq::Client.push_bulk("class" => ScaleSidekiqJob, "args" => slice.map { |i| [i] }, "queue" => q)
      end
    end
  end
  total = per_queue * queues.size
  Timeout.timeout(300) do
    if system == :fiber_job
      sleep 0.002 until redis.get("fiber_job:stat:processed").to_i >= total
    else
      sleep 0.002 until queues.sum { |q| redis.llen("queue:#{q}") }.zero?
    end
  end
  rate = total / (mono - t0)
  cpu = redis_cpu(target) - cpu0
  pids.each { |pid| stop(pid) }
  [rate, cpu * 1e6 / total]
end

# Seconds of CPU the Redis server(s) used so far (user + sys; a Cluster's masters summed).
def redis_cpu(target)
  Array(target).sum do |url|
    r = Redis.new(url: url)
    info = r.info("cpu")
    r.close
    info["used_cpu_user"].to_f + info["used_cpu_sys"].to_f
  end
end

selected = ARGV.empty? ? %w[W10 W11] : ARGV.map(&:upcase)
single = RedisServer.new.start
SERVERS << single
url = "redis://127.0.0.1:#{single.port}/0"
redis = Redis.new(url: url)
puts "scale benchmarks: FiberJob #{FiberJob::VERSION} vs Sidekiq #{Sidekiq::VERSION}, #{Etc.nprocessors} cores, " \
     "#{ROUNDS} rounds, medians"

if selected.include?("W10")
  results = { fiber_job: [], sidekiq: [] }
  # One round: an idle worker's counts barely vary, and a round takes two minutes.
  %i[fiber_job sidekiq].each { |s| results[s] << idle_cost(s, url, redis) }
  fj, sk = results.values_at(:fiber_job, :sidekiq)
  puts format("W10 idle worker, 200 queues: FiberJob %d connections, %.1f commands/s; Sidekiq %d connections, %.1f commands/s",
              median(fj.map { |r| r[:clients] }), median(fj.map { |r| r[:commands_per_s] }),
              median(sk.map { |r| r[:clients] }), median(sk.map { |r| r[:commands_per_s] }))
end

if selected.include?("W11")
  cluster = ClusterGroup.new(masters: 3).start
  SERVERS << cluster
  queues = cluster.queues_on_different_masters(3, prefix: "s")
  cluster_redis = Redis.new(cluster: cluster.seed_urls)
  flush_cluster = -> { cluster.flush }
  FiberJob.configure { |c| c.redis_url = url }
  Sidekiq.configure_client { |c| c.redis = { url: url, size: 5 } }
  [1, 2, 4].each do |processes|
    fj = []
    sk = []
    fc = []
    ROUNDS.times do
      FiberJob.reset!
      FiberJob.configure { |c| c.redis_url = url }
      fj << throughput(:fiber_job, url, redis, queues, processes)
      sk << throughput(:sidekiq, url, redis, queues, processes)
      FiberJob.reset!
      FiberJob.configure { |c| c.redis_cluster = cluster.seed_urls }
      flush_cluster.call
      fc << throughput(:fiber_job, cluster.seed_urls, cluster_redis, queues, processes)
    end
    rates = ->(rs) { rs.map(&:first) }
    cost = ->(rs) { median(rs.map(&:last)) }
    f, k, c = rates.call(fj), rates.call(sk), rates.call(fc)
    puts format("W11 %d process(es), %d no-op jobs on 3 queues, concurrency %d each: one Redis FiberJob %d jobs/s " \
                "[%d..%d], Sidekiq %d jobs/s [%d..%d] (%.1f×); 3-master Cluster FiberJob %d jobs/s [%d..%d]; " \
                "Redis CPU per job (enqueue + run): FiberJob %.2f µs, Sidekiq %.2f µs, FiberJob on the Cluster %.2f µs " \
                "(all masters)",
                processes, JOBS, CONC_PER_QUEUE, median(f), f.min, f.max, median(k), k.min, k.max,
                median(f) / median(k), median(c), c.min, c.max, cost.call(fj), cost.call(sk), cost.call(fc))
    $stdout.flush
  end
end
