# frozen_string_literal: true

require "net/http"

# The job body shared by the FiberJob and Sidekiq benchmark workers, so both run the
# same code. Counts performs; at the N-th writes the result (JSON) through `writer`.
# Times are measured inside the worker: the first perform's start to the N-th's end;
# the worker's CPU (every thread of the process, user + system) over the same span.
module Tally
  MODE = ENV.fetch("MODE", "noop")   # noop | sleep | latency | http
  HTTP_URL = ENV["HTTP_URL"]
  N = Integer(ENV.fetch("N"))
  SLEEP = ENV.fetch("SLEEP", "0").to_f
  RSS_MARK = Integer(ENV.fetch("RSS_MARK", "0")) # record RSS after this many jobs

  @lock = Mutex.new
  @count = 0
  @first = nil
  @first_cpu = nil
  @samples = []
  @rss_mark = nil

  class << self
    attr_accessor :writer, :on_done

    def perform(arg)
      start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      sample = nil
      case MODE
      when "sleep" then sleep SLEEP
      when "http" then Net::HTTP.get_response(URI(HTTP_URL)).value
      when "latency" then sample = (Process.clock_gettime(Process::CLOCK_REALTIME) - arg.to_f) * 1000.0
      end
      count = @lock.synchronize do
        unless @first # one check per job, as `@first ||= start` was
          @first = start
          @first_cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
        end
        @samples << sample if sample
        @count += 1
      end
      @rss_mark = rss_kb if count == RSS_MARK
      finish if count == N
    end

    def rss_kb
      File.read("/proc/self/status")[/VmRSS:\s+(\d+)/, 1].to_i
    end

    private

    def finish
      elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - @first
      cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - @first_cpu
      sorted = @samples.sort
      pct = ->(p, s = sorted) { s.empty? ? nil : s[((s.size - 1) * p).round].round(3) }
      # Past the first tenth of the jobs: a worker's first jobs also wait on YJIT
      # compiling its code, once per process.
      warm = @samples.drop(@samples.size / 10).sort
      writer.call(JSON.generate(
        "n" => N, "seconds" => elapsed, "jobs_per_s" => N / elapsed, "worker_cpu_us" => cpu * 1e6 / N,
        "p50_ms" => pct.call(0.5), "p99_ms" => pct.call(0.99), "p99_warm_ms" => pct.call(0.99, warm), "max_ms" => sorted.last&.round(3),
        "rss_mark_kb" => @rss_mark, "rss_end_kb" => rss_kb
      ))
      on_done&.call
    end
  end
end
