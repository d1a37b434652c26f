# frozen_string_literal: true

require_relative "../support/redis_server"
require_relative "../support/sentinel_group"
require_relative "../support/cluster_group"
require_relative "../support/tcp_proxy"

module Chaos
  # The Redis a chaos run runs against, and the faults only it can suffer. Each
  # topology starts its own redis-servers (in its own temporary directories) and stops
  # them in `cleanup`.
  class Topology
    def self.build(name, fsync:, seed:)
      case name
      when "single" then Single.new(fsync: fsync, seed: seed)
      when "sentinel" then Sentinel.new
      when "cluster" then Cluster.new
      else raise ArgumentError, "--topology #{name.inspect}: use single, sentinel or cluster"
      end
    end

    # What FiberJob processes are given (CHAOS_REDIS) — for worker `slot`, which may go
    # through its own proxy.
    def target(_slot = nil) = raise(NotImplementedError)

    # Fault kinds this topology adds to the workers' and clients' (name => weight).
    def fault_kinds = {}

    # Ports of the servers that hold data now (for Redis-full faults).
    def data_ports = raise(NotImplementedError)

    def proxy(_slot) = nil

    def wait_replicas = 0

    # kill -9 of a master's `server`; once `replaced` says a replica took its place (at
    # most 30 s) and `down` seconds more, it restarts (and rejoins as a replica).
    def kill_until_replaced(server, down, &replaced)
      server.kill9
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 30
      sleep 0.2 until safely(&replaced) || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep down
      server.start
    end

    # The block's answer; false while the servers cannot give one.
    def safely
      yield
    rescue StandardError
      false
    end

    # One Redis with AOF, each worker behind a proxy of its own (so one worker can be cut off).
    class Single < Topology
      def initialize(fsync:, seed:)
        super()
        @fsync = fsync
        @seed = seed
        @proxies = {}
      end

      def start
        @server = RedisServer.new(aof: true, args: ["--appendfsync", @fsync]).start
        self
      end

      def target(slot = nil)
        url = slot.nil? ? "redis://127.0.0.1:#{@server.port}" : proxy(slot).url
        { "url" => url }
      end

      def proxy(slot)
        @proxies[slot] ||= TcpProxy.new(@server.port, seed: @seed + slot).start
      end

      def data_ports = [@server.port]

      def fault_kinds
        { redis_kill: 2, net_cut: 3, net_latency: 2, net_stall: 2, net_partition: 2 }
      end

      # kill -9, then a restart from the AOF after `down` seconds.
      def redis_kill(down)
        @server.kill9
        sleep down
        @server.start
        @fsync
      end

      def cleanup
        @proxies.each_value(&:stop)
        @server&.cleanup
      end
    end

    # A master, two replicas, three sentinels.
    class Sentinel < Topology
      def start
        @group = SentinelGroup.new(replicas: 2, aof: true).start
        self
      end

      def target(_slot = nil) = { "sentinels" => @group.sentinel_urls, "master" => SentinelGroup::MASTER }
      def data_ports = [@group.master_port]
      # Every replica confirms each enqueue: whichever the sentinels promote has it.
      def wait_replicas = 2
      def fault_kinds = { failover: 2, master_kill: 2 }

      # SENTINEL FAILOVER: a replica is promoted, the master demoted.
      def failover
        @group.ask(@group.sentinel_ports.first, "SENTINEL", "FAILOVER", SentinelGroup::MASTER)
      end

      # kill -9 of the master; the sentinels promote a replica; it comes back (from its
      # AOF) `down` seconds after the promotion, and the sentinels make it a replica.
      def master_kill(down)
        port = @group.master_port
        kill_until_replaced(@group.server(port), down) { @group.master_port != port }
        port
      end

      def cleanup = @group&.cleanup
    end

    # Three masters with a replica each.
    class Cluster < Topology
      def start
        @group = ClusterGroup.new(masters: 3, replicas: 1, node_timeout_ms: 1000).start
        self
      end

      def target(_slot = nil) = { "cluster" => @group.seed_urls }
      def data_ports = @group.masters
      def wait_replicas = 1
      def fault_kinds = { cluster_master_kill: 3 }

      # kill -9 of one master; its replica takes over; the node restarts (empty, as
      # a replica) once the promotion happened (or `down` seconds, at least).
      def cluster_master_kill(down, rng)
        masters = @group.masters
        port = masters[rng.rand(masters.size)]
        kill_until_replaced(@group.server(port), down) { !@group.masters.include?(port) }
        port
      end

      def cleanup = @group&.cleanup
    end
  end
end
