# frozen_string_literal: true

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require_relative "support/gem_versions"
require "fiber_job"
require "redis"
require "timeout"
require_relative "support/rails_source"
require_relative "support/redis_server"
require_relative "support/helpers"
require_relative "support/worker_processes"
require_relative "support/ran"
require_relative "support/native_worker"
require_relative "support/certificates"
require_relative "support/sentinel_group"
require_relative "support/cluster_group"
require_relative "support/tcp_proxy"

# One redis-server for the whole run, started here and stopped at exit. Specs that
# need to kill or restart Redis start their own RedisServer.
TEST_REDIS = RedisServer.new.start
at_exit { TEST_REDIS.cleanup }

# With FIBER_JOB_TEST_CLUSTER=1 (bin/test's cluster pass) the specs run against a
# 3-master Redis Cluster of their own instead: FiberJob is configured with its seed
# nodes and `redis` in specs is a cluster client.
TEST_CLUSTER = (ClusterGroup.new(masters: 3).start if ENV["FIBER_JOB_TEST_CLUSTER"])
at_exit { TEST_CLUSTER&.cleanup }

RSpec.configure do |config|
  config.include SpecHelpers
  config.include WorkerProcesses
  config.include NativeWorker
  config.disable_monkey_patching!
  config.order = :defined
  config.example_status_persistence_file_path = "spec/examples.txt"

  config.before do
    FiberJob.reset!
    FiberJob.logger = Logger.new(File::NULL) unless ENV["FIBER_JOB_SPEC_LOG"]
    if TEST_CLUSTER
      FiberJob.config.redis_cluster = TEST_CLUSTER.seed_urls
      TEST_CLUSTER.flush
    else
      FiberJob.config.redis_url = TEST_REDIS.url
      Redis.new(url: TEST_REDIS.url).flushdb
    end
  end

  config.after do
    kill_spawned
    @redis&.close
  end

  # A backstop, not a measure: an example that hangs fails after EXAMPLE_LIMIT seconds
  # (the slowest take about a minute) instead of eating the whole CI run.
  config.around do |example|
    Timeout.timeout(EXAMPLE_LIMIT, ExampleTimeout, "#{example.full_description} took over #{EXAMPLE_LIMIT}s") do
      example.run
    end
  end
end

EXAMPLE_LIMIT = Integer(ENV.fetch("FIBER_JOB_SPEC_LIMIT", "420"))
class ExampleTimeout < StandardError; end
