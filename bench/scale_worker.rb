# frozen_string_literal: true

# Worker for bench/scale.rb. FiberJob: `ruby scale_worker.rb N` runs N worker
# processes as `fiber_job -P N` does (the app loaded once, then forked), each working
# QUEUES at CONC per queue, prefetch 100, on REDIS_URL or the CLUSTER seeds. Sidekiq:
# loaded by `sidekiq -r`, it defines the job class.
if defined?(Sidekiq::CLI)
  require_relative "stack"
  require "sidekiq"
  Redis.silence_deprecations = true if defined?(Redis) && Redis.respond_to?(:silence_deprecations=)
  Sidekiq.configure_server { |c| c.redis = { url: ENV.fetch("REDIS_URL") } }
  Sidekiq.logger.level = Logger::WARN

  class ScaleSidekiqJob
    include Sidekiq::Worker
    sidekiq_options retry: false

    def perform(_i) = nil
  end
else
  $LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
  require "fiber_job"
  require "fiber_job/swarm"

  FiberJob.configure do |c|
    if ENV["CLUSTER"]
      c.redis_cluster = ENV["CLUSTER"].split(",")
    else
      c.redis_url = ENV.fetch("REDIS_URL")
    end
    c.prefetch = 100
    c.log_level = :warn
  end

  class ScaleJob < FiberJob::Job
    def perform(_i) = nil
  end

  queues = ENV.fetch("QUEUES").split(",")
  conc = Integer(ENV.fetch("CONC"))
  build = -> { FiberJob::Worker.new(queues: queues, concurrency: conc) }
  exit FiberJob::Swarm.new(Integer(ARGV.fetch(0, "1")), logger: FiberJob.logger, &build).run
end
