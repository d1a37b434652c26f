# frozen_string_literal: true

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "fiber_job"
require "redis"
require_relative "support/redis_server"
require_relative "support/helpers"
require_relative "support/worker_processes"
require_relative "support/ran"
require_relative "support/native_worker"
require_relative "support/certificates"
require_relative "support/sentinel_group"

# One redis-server for the whole run, started here and stopped at exit. Specs that
# need to kill or restart Redis start their own RedisServer.
TEST_REDIS = RedisServer.new.start
at_exit { TEST_REDIS.cleanup }

RSpec.configure do |config|
  config.include SpecHelpers
  config.include WorkerProcesses
  config.include NativeWorker
  config.disable_monkey_patching!
  config.order = :defined
  config.example_status_persistence_file_path = "spec/examples.txt"

  config.before do
    FiberJob.reset!
    FiberJob.config.redis_url = TEST_REDIS.url
    FiberJob.logger = Logger.new(File::NULL) unless ENV["FIBER_JOB_SPEC_LOG"]
    Redis.new(url: TEST_REDIS.url).flushdb
  end

  config.after do
    kill_spawned
    @redis&.close
  end
end
