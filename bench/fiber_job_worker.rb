# frozen_string_literal: true

# FiberJob benchmark worker: one process, the queue `default` at CONC, fiber executor.
$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "fiber_job"
require_relative "tally"

FiberJob.configure do |c|
  c.redis_url = ENV.fetch("REDIS_URL")
  c.redis_tls = { ca_file: ENV["TLS_CA"] } if ENV["TLS_CA"]
  c.queue_concurrency = { default: Integer(ENV.fetch("CONC")) }
  c.prefetch = ENV.fetch("PREFETCH", "auto") == "auto" ? :auto : Integer(ENV.fetch("PREFETCH"))
  c.executor = ENV.fetch("EXECUTOR", "fiber").to_sym
  c.log_level = :warn
end

class FiberBench < FiberJob::Job
  def perform(arg) = Tally.perform(arg)
end

if ENV["AJ"] == "1" # W9: the same body as an ActiveJob job, through FiberJob's adapter
  require "fiber_job/active_job"
  ActiveJob::Base.logger = Logger.new(nil)
  class AJBench < ActiveJob::Base
    def perform(arg) = Tally.perform(arg)
  end
end

Tally.writer = ->(json) { FiberJob.const_get(:Internal).enqueue._push("bench_result", [json]) }
worker = FiberJob::Worker.new
Tally.on_done = -> { worker.stop }
worker.start
