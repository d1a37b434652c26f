# frozen_string_literal: true

require_relative "resp"
require "tmpdir"
require "fileutils"

# One master, `replicas` replicas (default one) and three sentinels of the test's own
# (`redis-server --sentinel`), with a short down-after so a failover takes seconds.
class SentinelGroup
  MASTER = "fjmaster"

  attr_reader :master, :replica, :sentinel_ports

  # `aof: true` gives every server an AOF (fsync always), as production would: a
  # master killed and restarted comes back with its data, not empty.
  def initialize(down_after_ms: 1000, replicas: 1, aof: false)
    @dir = Dir.mktmpdir("fiber_job-sentinel")
    @down_after_ms = down_after_ms
    @replica_count = replicas
    @aof = aof
    @master = RedisServer.new(aof: aof)
    @replicas = []
    @replica = nil
    @sentinel_ports = Array.new(3) { RedisServer.free_port }
    @sentinel_pids = []
  end

  def start
    @master.start
    @replicas = Array.new(@replica_count) { RedisServer.new(aof: @aof, args: ["--replicaof", "127.0.0.1", @master.port.to_s]).start }
    @replica = @replicas.first
    @sentinel_ports.each_with_index do |port, i|
      conf = File.join(@dir, "sentinel-#{i}.conf")
      File.write(conf, <<~CONF)
        port #{port}
        bind 127.0.0.1
        dir #{@dir}
        logfile #{File.join(@dir, "sentinel-#{i}.log")}
        sentinel monitor #{MASTER} 127.0.0.1 #{@master.port} 2
        sentinel down-after-milliseconds #{MASTER} #{@down_after_ms}
        sentinel failover-timeout #{MASTER} 5000
        sentinel parallel-syncs #{MASTER} 1
      CONF
      @sentinel_pids << Process.spawn("redis-server", conf, "--sentinel", out: File::NULL, err: File::NULL)
    end
    wait_until_ready
    self
  end

  def sentinel_urls
    @sentinel_ports.map { |p| "redis://127.0.0.1:#{p}" }
  end

  # The master's port as the sentinels see it now.
  def master_port
    ask(@sentinel_ports.first, "SENTINEL", "get-master-addr-by-name", MASTER)&.last.to_i
  end

  def cleanup
    @sentinel_pids.each do |pid|
      Process.kill("KILL", pid)
      Process.wait(pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    end
    [@master, *@replicas].each(&:cleanup)
    FileUtils.rm_rf(@dir)
  end

  # The server (master or replica) listening on `port`.
  def server(port) = [@master, *@replicas].find { |s| s.port == port }

  # Sends one command in RESP to a port; returns the reply (Array, String or nil).
  def ask(port, *args) = Resp.ask(port, *args)

  private

  # Every sentinel knows the master, the replica and the two other sentinels, and the
  # replica is in sync: a failover can happen.
  def wait_until_ready
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 30
    until ready?
      raise "sentinels did not get ready" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.1
    end
  end

  def ready?
    @sentinel_ports.all? do |port|
      master = ask(port, "SENTINEL", "master", MASTER)
      next false unless master.is_a?(Array)

      info = master.each_slice(2).to_h
      info["num-slaves"].to_i == @replica_count && info["num-other-sentinels"].to_i == 2
    end && @replicas.all? { |r| ask(r.port, "INFO", "replication").to_s.include?("master_link_status:up") }
  end
end
