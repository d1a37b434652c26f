# frozen_string_literal: true

# FiberJob's demo (run it with bin/demo, which installs and builds what is missing
# first): enqueues a few real jobs (immediate, with arguments, scheduled, one that
# fails), runs a worker until they are done, and prints what ran, Queue.stats and
# failed_jobs. Uses REDIS_URL (default redis://localhost:6379); if no Redis answers
# there, it starts a private redis-server for the demo and stops it afterwards.
require "fileutils"
require "socket"
require "tmpdir"
require "uri"

ROOT = File.expand_path("..", __dir__)
$LOAD_PATH.unshift(File.join(ROOT, "lib"))
require "fiber_job"

def redis_up?(url)
  uri = URI(url)
  Socket.tcp(uri.host || "localhost", uri.port || 6379, connect_timeout: 0.5) do |s|
    s.write("PING\r\n")
    s.gets&.start_with?("+PONG", "-NOAUTH")
  end
rescue SystemCallError, SocketError, IOError
  false
end

url = ENV.fetch("REDIS_URL", "redis://localhost:6379")
own_redis = nil
dir = nil
unless redis_up?(url)
  port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }
  dir = Dir.mktmpdir("fiber_job-demo")
  own_redis = Process.spawn("redis-server", "--port", port.to_s, "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", dir, out: File::NULL)
  url = "redis://127.0.0.1:#{port}/0"
  sleep 0.05 until redis_up?(url)
  puts "No Redis answered at #{ENV.fetch("REDIS_URL", "redis://localhost:6379")}; started one at #{url}"
end

begin
FiberJob.configure do |config|
  config.redis_url = url
  config.prefix = "fiber_job_demo:#{Process.pid}" # keeps the demo's keys apart
  config.queues = %i[default high]
  config.queue_concurrency = { default: 5, high: 10 }
  config.log_level = :warn
end

RAN = Thread::Queue.new

class EmailJob < FiberJob::Job
  def perform(user_id, message)
    sleep 0.05 # stands in for talking to a mail server; fibers interleave here
    RAN << "EmailJob(#{user_id}, #{message.inspect})"
  end
end

class ReportJob < FiberJob::Job
  def initialize
    super
    @queue = :high
  end

  def perform(report)
    RAN << "ReportJob(#{report.inspect}) on queue high"
  end
end

class FlakyJob < FiberJob::Job
  def perform(order_id)
    RAN << "FlakyJob(#{order_id}) raised"
    raise "payment gateway timed out for order #{order_id}"
  end
end

class NoopJob < FiberJob::Job
  def perform(_i) = nil
end

puts "\n== Enqueueing"
puts "EmailJob.perform_async(123, \"Welcome to our platform!\") => #{EmailJob.perform_async(123, "Welcome to our platform!").inspect}"
EmailJob.perform_async(456, "Don't forget to complete your profile")
ReportJob.perform_async("daily")
FlakyJob.perform_async(42)
EmailJob.perform_in(3600, 789, "Daily newsletter")
NoopJob.perform_bulk(Array.new(20_000) { |i| [i] })
puts "plus one job in an hour and 20,000 no-op jobs (perform_bulk)"
puts "Queue.stats(:default) before the worker: #{FiberJob::Queue.stats(:default)}"

puts "\n== Working"
worker = FiberJob::Worker.new
started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
stopper = Thread.new do
  sleep 0.01 until FiberJob::Queue.stats(:default)[:size].zero? && FiberJob::Queue.stats(:high)[:size].zero? && RAN.size >= 4
  sleep 0.2
  worker.stop
end
worker.start
elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
stopper.join
puts RAN.pop until RAN.empty?
puts format("worked 20,004 jobs in %.2fs (%d jobs/s, including start and stop)", elapsed, 20_004 / elapsed)

puts "\n== Queue.stats"
%i[default high].each { |q| puts "#{q}: #{FiberJob::Queue.stats(q)}" }
puts "(scheduled: the hourly newsletter and FlakyJob's pending retry)"

puts "\n== Queue.failed_jobs"
FiberJob::Queue.failed_jobs.each do |job|
  puts "Failed: #{job["class"]} - #{job["error"]} (attempt #{job["retry_count"]}, args #{job["args"].inspect})"
end
ensure
  if defined?(FiberJob) && FiberJob.config.prefix.start_with?("fiber_job_demo:")
    begin
      require "redis"
      r = Redis.new(url: FiberJob.config.redis_url)
      keys = r.keys("#{FiberJob.config.prefix}:*")
      r.del(*keys) unless keys.empty?
    rescue LoadError, StandardError
      nil
    end
  end
  if own_redis
    Process.kill("TERM", own_redis)
    Process.wait(own_redis)
    FileUtils.rm_rf(dir)
  end
end
