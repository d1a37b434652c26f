# frozen_string_literal: true

# Sidekiq benchmark app, loaded by `sidekiq -r bench/sidekiq_app.rb -c CONC`.
require_relative "stack"
require "sidekiq"
require "json"
Redis.silence_deprecations = true if defined?(Redis) && Redis.respond_to?(:silence_deprecations=)
require_relative "tally"

Sidekiq.configure_server { |c| c.redis = { url: ENV.fetch("REDIS_URL") } }
Sidekiq.logger.level = Logger::WARN

class SidekiqBench
  include Sidekiq::Worker
  sidekiq_options retry: false

  def perform(arg) = Tally.perform(arg)
end

if ENV["AJ"] == "1" # W9: the same body as an ActiveJob job, through Sidekiq's adapter
  require "active_job"
  BenchStack.sidekiq_active_job_adapter
  ActiveJob::Base.queue_adapter = :sidekiq
  ActiveJob::Base.logger = Logger.new(nil)
  class AJBench < ActiveJob::Base
    def perform(arg) = Tally.perform(arg)
  end
end

Tally.writer = ->(json) { Sidekiq.redis { |r| r.lpush("bench_result", json) } }
