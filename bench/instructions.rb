# frozen_string_literal: true

# Instructions per job: one FiberJob worker (bench/fiber_job_worker.rb, no-op jobs,
# concurrency 10) under `valgrind --tool=callgrind`, every thread counted, for N and 2N
# pre-enqueued jobs; the difference divided by N is what one job costs, start-up and
# shutdown cancelled out. Split by where the instructions run: Ruby (libruby), the
# engine (fiber_job.so) and the rest (libc, the kernel interface, ...). Unlike jobs/s,
# it does not move with machine noise.
# Usage: ruby bench/instructions.rb  (N=20000; PREFETCH="auto 0 100"; KEEP=dir keeps the
# callgrind files)
require "json"
require "tmpdir"
require "fileutils"
$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
$LOAD_PATH.unshift(File.expand_path("../spec", __dir__))
require "fiber_job"
require "redis"
require "support/redis_server"

BENCH = __dir__
N = Integer(ENV.fetch("N", "20000"))
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

# Instructions of one run of `n` jobs, by object: { "ruby" =>, "fiber_job" =>, "other" => }.
def run(n, prefetch, redis, url, dir)
  redis.flushdb
  n.times.each_slice(1000) { |s| FiberBench.perform_bulk(s.map { |i| [i] }) }
  out = File.join(dir, "cg.#{n}.#{prefetch}")
  env = { "REDIS_URL" => url, "MODE" => "noop", "N" => n.to_s, "CONC" => "10", "PREFETCH" => prefetch.to_s }
  ok = system(env, "valgrind", "--tool=callgrind", "--callgrind-out-file=#{out}", RbConfig.ruby,
              File.join(BENCH, "fiber_job_worker.rb"), out: File::NULL, err: File::NULL)
  raise "the worker under callgrind failed" unless ok && redis.rpop("fiber_job:queue:{bench_result}")
  FileUtils.cp(out, ENV["KEEP"]) if ENV["KEEP"] # to compare function by function (callgrind_annotate)

  by_object = Hash.new(0)
  IO.popen(["callgrind_annotate", "--inclusive=no", "--threshold=100", out], &:readlines).each do |line|
    count = line[/\A\s*([\d,]+) /, 1] or next
    object = line[/\[([^\]]+)\]\s*\z/, 1] or next
    key = if object.include?("libruby") then "ruby"
          elsif object.include?("fiber_job") then "fiber_job"
          else "other"
          end
    by_object[key] += count.delete(",").to_i
  end
  by_object
end

puts "instructions per no-op job, one FiberJob worker, concurrency 10 (callgrind, #{2 * N} − #{N} jobs)"
ENV.fetch("PREFETCH", "auto 0 100").split.each do |prefetch|
  small = run(N, prefetch, redis, url, dir)
  large = run(2 * N, prefetch, redis, url, dir)
  per = %w[ruby fiber_job other].to_h { |k| [k, (large[k] - small[k]).to_f / N] }
  puts format("prefetch %-4s  total %8.0f   Ruby %8.0f   engine (fiber_job.so) %7.0f   other %7.0f",
              prefetch, per.values.sum, per["ruby"], per["fiber_job"], per["other"])
  $stdout.flush
end
