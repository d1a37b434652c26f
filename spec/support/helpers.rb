# frozen_string_literal: true

require "openssl"
require "rbconfig"
require "uri"
require "timeout"
require "fileutils"
require "tmpdir"

# Helpers shared by the specs: a raw Redis client for assertions, running a worker in
# this process or as a real subprocess, and waiting with a bound.
module SpecHelpers
  LIB = File.expand_path("../../lib", __dir__)

  def redis
    @redis ||= raw_redis(FiberJob.config)
  end

  # A redis-rb client for the test's assertions, connected as `config` says: the URL
  # (with its TLS files), or the Sentinel master.
  def raw_redis(config)
    tls = config.redis_tls
    ssl = tls && { ca_file: tls[:ca_file], cert: tls[:cert_file] && OpenSSL::X509::Certificate.new(File.read(tls[:cert_file])),
                   key: tls[:key_file] && OpenSSL::PKey.read(File.read(tls[:key_file])) }.compact
    if config.redis_cluster.any?
      cluster_redis(config.redis_cluster, ssl)
    elsif config.redis_sentinels.any?
      sentinels = config.redis_sentinels.map { |u| URI(u).then { |x| { host: x.host, port: x.port } } }
      Redis.new(url: "redis://#{config.redis_sentinel_master}", sentinels: sentinels, role: :master)
    elsif ssl
      Redis.new(url: config.redis_url, ssl: true, ssl_params: ssl)
    else
      Redis.new(url: config.redis_url)
    end
  end

  # A cluster client: redis-rb 4's `Redis.new(cluster:)`, or redis-rb 5's, which moved
  # it to the redis-clustering gem.
  def cluster_redis(nodes, ssl)
    if Gem::Version.new(Redis::VERSION) < Gem::Version.new("5")
      return ssl ? Redis.new(cluster: nodes, ssl: true, ssl_params: ssl) : Redis.new(cluster: nodes)
    end

    require "redis-clustering"
    ssl ? Redis::Cluster.new(nodes: nodes, ssl: true, ssl_params: ssl) : Redis::Cluster.new(nodes: nodes)
  end

  # Ruby source that configures a spawned process to reach Redis as this one does.
  def connection_config_source
    config = FiberJob.config
    if config.redis_cluster.any?
      "c.redis_cluster = #{config.redis_cluster.inspect}; c.redis_tls = #{config.redis_tls.inspect}"
    elsif config.redis_sentinels.any?
      "c.redis_sentinels = #{config.redis_sentinels.inspect}; c.redis_sentinel_master = #{config.redis_sentinel_master.dump}"
    else
      "c.redis_url = #{config.redis_url.dump}; c.redis_tls = #{config.redis_tls.inspect}"
    end + "; c.network_timeout = #{config.network_timeout}"
  end

  # Polls `block` until truthy or fails after `timeout` seconds (used only to wait
  # for another process's effect, never to assert timing).
  def wait_for(timeout: 10, interval: 0.01, message: "condition")
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      value = yield
      return value if value

      raise "timed out after #{timeout}s waiting for #{message}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep interval
    end
  end

  # Pushes payloads onto a queue's list the way another program would, and publishes
  # the wake-up idle fetchers wait for (the protocol in docs/ARCHITECTURE.md).
  # A Ruby script for an installed copy of the gem: after `check` (a line that aborts
  # when the gem loaded from the wrong place), it enqueues one job against the test Redis
  # and runs a worker until the job printed "performed 1 two on <RUBY_VERSION>".
  def installed_gem_job_script(check)
    <<~RUBY
      require "fiber_job"
      #{check}
      FiberJob.configure { |c| c.redis_url = #{TEST_REDIS.url.dump}; c.log_level = :warn }
      class InstalledJob < FiberJob::Job
        def perform(a, b) = (puts "performed \#{a} \#{b} on \#{RUBY_VERSION}"; $w.stop)
      end
      InstalledJob.perform_async(1, "two")
      $w = FiberJob::Worker.new
      $w.start
    RUBY
  end

  def raw_push(queue, payloads, client: redis)
    client.lpush("#{FiberJob.config.prefix}:queue:{#{queue}}", payloads)
    client.publish("#{FiberJob.config.prefix}:ready", queue.to_s)
  end

  # Payloads workers have taken from `queue` and not finished: their held sets and
  # processing lists (docs/ARCHITECTURE.md), of every process or of `identity`.
  def held_payloads(queue = "default", identity = "*", client: redis)
    prefix = FiberJob.config.prefix
    client.keys("#{prefix}:held:{#{queue}}:#{identity}").flat_map { |k| client.smembers(k) } +
      client.keys("#{prefix}:processing:{#{queue}}:#{identity}").flat_map { |k| client.lrange(k, 0, -1) }
  end

  # Every held set and processing list in Redis (none once workers stopped cleanly).
  def held_keys(client: redis)
    prefix = FiberJob.config.prefix
    client.keys("#{prefix}:processing:*") + client.keys("#{prefix}:held:*")
  end

  # Runs a worker on a thread of this process until the block returns.
  def with_worker(**options)
    worker = FiberJob::Worker.new(**options)
    thread = Thread.new { worker.start }
    thread.report_on_exception = true
    yield worker
  ensure
    worker&.stop
    thread&.join(30) || raise("worker thread did not stop")
  end

  # Writes a Ruby program (fiber_job loaded, configured for the test Redis, then
  # `body`) and starts it as a real process. Returns [pid, output file].
  def spawn_ruby(body, env: {})
    dir = Dir.mktmpdir("fiber_job-proc")
    (@spawn_dirs ||= []) << dir # removed after the example (kill_spawned)
    script = File.join(dir, "main.rb")
    out = File.join(dir, "out.log")
    File.write(script, <<~RUBY)
      $stdout.sync = true
      require "fiber_job"
      FiberJob.configure { |c| #{connection_config_source}; c.prefix = #{FiberJob.config.prefix.dump} }
      #{body}
    RUBY
    pid = Process.spawn(env, RbConfig.ruby, "-I", LIB, script, out: out, err: [:child, :out], pgroup: true)
    (@spawned ||= []) << pid
    [pid, out]
  end

  EXE = File.expand_path("../../exe/fiber_job", __dir__)

  # Starts the `fiber_job` command as a real process against the test Redis, output
  # to `log`. Returns its pid (killed after the example if still running).
  def spawn_fiber_job(*args, log:, env: {})
    pid = Process.spawn({ "REDIS_URL" => FiberJob.config.redis_url }.merge(env), RbConfig.ruby, EXE, *args,
                        out: log, err: %i[child out], pgroup: true)
    (@spawned ||= []) << pid
    pid
  end

  # Waits for a spawned process; returns its Process::Status.
  # A process that does not end in time stays spawned: the example's cleanup kills it.
  def wait_process(pid, timeout: 30)
    status = Timeout.timeout(timeout) { Process.wait2(pid).last }
    @spawned&.delete(pid)
    status
  end

  def kill_spawned
    (@spawned || []).each do |pid|
      Process.kill("KILL", -pid)
    rescue Errno::ESRCH, Errno::EPERM
      nil
    ensure
      begin
        Process.wait(pid)
      rescue Errno::ECHILD
        nil
      end
    end
    @spawned = []
    (@spawn_dirs || []).each { |dir| FileUtils.rm_rf(dir) }
    @spawn_dirs = []
  end
end
