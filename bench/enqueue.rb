# frozen_string_literal: true

# Enqueue benchmark (W3) and paced producer (W4), for one system per process.
#   ruby bench/enqueue.rb SYSTEM single|bulk|threads N
#   ruby bench/enqueue.rb SYSTEM paced N RATE
$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "json"
system_name, mode, n, rate = ARGV
n = Integer(n)

if system_name == "fiber_job"
  require "fiber_job"
  FiberJob.configure do |c|
    c.redis_url = ENV.fetch("REDIS_URL")
    c.redis_tls = { ca_file: ENV["TLS_CA"] } if ENV["TLS_CA"]
    c.redis_wait_replicas = Integer(ENV.fetch("WAIT_REPLICAS", "0"))
  end
  class FiberBench < FiberJob::Job; end
  one = ->(arg) { FiberBench.perform_async(arg) }
  bulk = ->(args) { FiberBench.perform_bulk(args.map { |a| [a] }) }
else
  require_relative "stack"
  require "sidekiq"
  Redis.silence_deprecations = true if defined?(Redis) && Redis.respond_to?(:silence_deprecations=)
  Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), size: 20 } }
  class SidekiqBench
    include Sidekiq::Worker
  end
  one = ->(arg) { SidekiqBench.perform_async(arg) }
  bulk = ->(args) { Sidekiq::Client.push_bulk("class" => SidekiqBench, "args" => args.map { |a| [a] }) }
end

mono = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
one.call(0) # connect first
started = mono.call
case mode
when "single" then n.times { |i| one.call(i) }
when "bulk" then (0...n).each_slice(1000) { |s| bulk.call(s) }
when "threads"
  threads = 16
  Array.new(threads) { |t| Thread.new { (n / threads).times { |i| one.call((t * n) + i) } } }.each(&:join)
when "paced"
  interval = 1.0 / Float(rate)
  n.times do |i|
    target = started + (i * interval)
    pause = target - mono.call
    sleep pause if pause.positive?
    one.call(Process.clock_gettime(Process::CLOCK_REALTIME))
  end
end
elapsed = mono.call - started
puts JSON.generate("jobs_per_s" => n / elapsed)
