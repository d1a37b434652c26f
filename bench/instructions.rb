# frozen_string_literal: true

# Instructions per job: one worker process (no-op jobs, bench/tally.rb's body,
# concurrency 10) under `valgrind --tool=callgrind`, every thread counted, for N and 2N
# pre-enqueued jobs; the difference divided by N is what one job costs, start-up and
# shutdown cancelled out. FiberJob's is split by where the instructions run: Ruby
# (libruby, or the ruby binary where it is linked in), the engine (fiber_job.so) and the
# rest (libc, the allocator, YJIT's generated code, ...).
# Unlike jobs/s, it does not move with machine noise.
#
# Usage: ruby bench/instructions.rb  (N=20000; PREFETCH="auto 0 100" for FiberJob;
# SYSTEMS="fiber_job sidekiq" to count Sidekiq's worker too, the version SIDEKIQ_VERSION
# names; YJIT=1 runs both with --yjit, which valgrind follows with --smc-check; KEEP=dir
# keeps the callgrind files; ROUNDS=3 measures each three times and prints the median)
require "json"
require "tmpdir"
require "fileutils"
$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
$LOAD_PATH.unshift(File.expand_path("../spec", __dir__))
require "fiber_job"
require_relative "stack"
require "redis"
require "support/redis_server"

BENCH = __dir__
N = Integer(ENV.fetch("N", "20000"))
ROUNDS = Integer(ENV.fetch("ROUNDS", "1"))
SYSTEMS = ENV.fetch("SYSTEMS", "fiber_job").split.map(&:to_sym)
server = RedisServer.new.start
dir = Dir.mktmpdir("fiber_job-callgrind")
at_exit do
  server.cleanup
  FileUtils.rm_rf(dir)
end
url = "redis://127.0.0.1:#{server.port}/0"
redis = Redis.new(url: url)
FiberJob.configure { |c| c.redis_url = url }
class FiberBench < FiberJob::Job; end
if SIDEKIQ = SYSTEMS.include?(:sidekiq)
  require "sidekiq"
  Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)
  Sidekiq.configure_client { |c| c.redis = { url: url, size: 2 } }
  class SidekiqBench
    include Sidekiq::Job
  end
end

VALGRIND = ["valgrind", "--tool=callgrind", *("--smc-check=all-non-file" if BenchStack::YJIT)].freeze

def enqueue(system, n)
  n.times.each_slice(1000) do |s|
    if system == :fiber_job
      FiberBench.perform_bulk(s.map { |i| [i] })
    else
      Sidekiq::Client.push_bulk("class" => SidekiqBench, "args" => s.map { |i| [i] })
    end
  end
end

# Instructions of one run of `n` jobs, by object: { "ruby" =>, "fiber_job" =>, "other" => }.
def run(system, n, prefetch, redis, url, dir)
  redis.flushdb
  enqueue(system, n)
  out = File.join(dir, "cg.#{system}.#{n}.#{prefetch}")
  env = BenchStack.worker_env({ "REDIS_URL" => url, "MODE" => "noop", "N" => n.to_s, "CONC" => "10",
                                "PREFETCH" => prefetch.to_s })
  if system == :fiber_job
    ok = system(env, *VALGRIND, "--callgrind-out-file=#{out}", RbConfig.ruby, File.join(BENCH, "fiber_job_worker.rb"),
                out: File::NULL, err: File::NULL)
    raise "the worker under callgrind failed" unless ok && redis.rpop("fiber_job:queue:{bench_result}")
  else
    # Sidekiq runs until TERM: stopped once the N-th job wrote its result.
    pid = Process.spawn(env, *VALGRIND, "--callgrind-out-file=#{out}",
                        *BenchStack.sidekiq_command("-r", File.join(BENCH, "sidekiq_app.rb"), "-c", "10", "-q", "default")
                          .then { |cmd| cmd.first == "sidekiq" ? [RbConfig.ruby, "-S", *cmd] : cmd },
                        out: File::NULL, err: File::NULL)
    sleep 0.2 until redis.rpop("bench_result")
    Process.kill("TERM", pid)
    Process.wait(pid)
  end
  FileUtils.cp(out, ENV["KEEP"]) if ENV["KEEP"] # to compare function by function (callgrind_annotate)

  by_object = Hash.new(0)
  IO.popen(["callgrind_annotate", "--inclusive=no", "--threshold=100", out], &:readlines).each do |line|
    count = line[/\A\s*([\d,]+) /, 1] or next
    object = line[/\[([^\]]+)\]\s*\z/, 1] or next
    key = if object.include?("libruby") || object.end_with?("/bin/ruby") then "ruby"
          elsif object.include?("fiber_job") then "fiber_job"
          else "other"
          end
    by_object[key] += count.delete(",").to_i
  end
  by_object
end

puts "instructions per no-op job, one worker process, concurrency 10 (callgrind, #{2 * N} − #{N} jobs); " \
     "#{SIDEKIQ ? BenchStack.description : "Ruby #{RUBY_VERSION} (YJIT #{BenchStack::YJIT ? "on" : "off"})"}"
SYSTEMS.each do |system|
  prefetches = system == :fiber_job ? ENV.fetch("PREFETCH", "auto 0 100").split : ["-"]
  prefetches.each do |prefetch|
    # Under callgrind the threads take turns, so how jobs fall into fetches, acker
    # wake-ups and executor waits moves a total by ~5 % between runs: ROUNDS pairs,
    # the one with the median total printed, with the spread.
    rounds = Array.new(ROUNDS) do
      small = run(system, N, prefetch, redis, url, dir)
      large = run(system, 2 * N, prefetch, redis, url, dir)
      %w[ruby fiber_job other].to_h { |k| [k, (large[k] - small[k]).to_f / N] }
    end
    totals = rounds.map { |r| r.values.sum }
    per = rounds.sort_by { |r| r.values.sum }[ROUNDS / 2]
    label = system == :fiber_job ? "FiberJob, prefetch #{prefetch}" : "Sidekiq #{Sidekiq::VERSION}"
    puts format("%-26s total %8.0f   Ruby %8.0f   engine (fiber_job.so) %7.0f   other %7.0f%s",
                label, per.values.sum, per["ruby"], per["fiber_job"], per["other"],
                ROUNDS > 1 ? format("   (median of %d: %.0f..%.0f)", ROUNDS, totals.min, totals.max) : "")
    $stdout.flush
  end
end
