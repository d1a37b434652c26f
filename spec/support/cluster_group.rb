# frozen_string_literal: true

require_relative "resp"

# A Redis Cluster of the test's own: `masters` redis-servers with --cluster-enabled
# (each with `replicas` replicas), joined by `redis-cli --cluster create`. Each node's
# bus port is chosen free too (--cluster-port), so clusters never collide. With
# `password:` every node requires it; with `tls:` ({ cert:, key:, ca:, client_cert:,
# client_key: }) nodes speak only TLS, to clients and on the cluster bus.
class ClusterGroup
  attr_reader :nodes

  def initialize(masters: 3, replicas: 0, node_timeout_ms: 1000, password: nil, tls: nil)
    @masters = masters
    @replicas = replicas
    @node_timeout_ms = node_timeout_ms
    @password = password
    @tls = tls
    @nodes = []
  end

  def start
    (@masters * (1 + @replicas)).times do
      args = ["--cluster-enabled", "yes", "--cluster-port", RedisServer.free_port.to_s,
              "--cluster-node-timeout", @node_timeout_ms.to_s, "--cluster-require-full-coverage", "no"]
      args += ["--requirepass", @password, "--masterauth", @password] if @password
      if @tls # nodes connect to each other as TLS clients, with a client certificate
        args += ["--tls-cluster", "yes", "--tls-replication", "yes",
                 "--tls-client-cert-file", @tls.fetch(:client_cert), "--tls-client-key-file", @tls.fetch(:client_key)]
      end
      @nodes << RedisServer.new(args: args, tls: @tls).start
    end
    out = IO.popen(["redis-cli", *cli_options, "--cluster", "create", *@nodes.map { |n| "127.0.0.1:#{n.port}" },
                    "--cluster-replicas", @replicas.to_s, "--cluster-yes"], err: %i[child out], &:read)
    raise "redis-cli --cluster create failed:\n#{out}" unless $?.success?

    wait_until_ok
    self
  rescue StandardError
    cleanup
    raise
  end

  def urls
    auth = @password ? ":#{@password}@" : ""
    @nodes.map { |n| "#{@tls ? "rediss" : "redis"}://#{auth}127.0.0.1:#{n.port}" }
  end

  # Seed URLs to configure FiberJob with: the masters (the client finds the rest).
  def seed_urls
    urls.first(@masters)
  end

  def cleanup
    @nodes.each(&:cleanup)
    @nodes = []
  end

  # Empties every master (replicas follow).
  def flush
    masters.each { |port| ask(port, "FLUSHALL") }
  end

  # Ports of the current masters.
  def masters
    slots.map { |s| s[:port] }.uniq
  end

  # [{ from:, to:, port:, id: }] from CLUSTER SLOTS.
  def slots
    reply = @nodes.each do |n|
      r = ask(n.port, "CLUSTER", "SLOTS")
      break r if r.is_a?(Array) && !r.empty?
    end
    raise "no node answers CLUSTER SLOTS" unless reply.is_a?(Array)

    reply.map { |from, to, master| { from: from, to: to, port: master[1].to_i, id: master[2] } }
  end

  def slot_of(key)
    @nodes.each do |n|
      slot = ask(n.port, "CLUSTER", "KEYSLOT", key)
      return slot if slot.is_a?(Integer)
    end
    raise "no node answers CLUSTER KEYSLOT"
  end

  # Port of the master that serves `key`'s slot now.
  def port_of(key)
    slot = slot_of(key)
    slots.find { |s| (s[:from]..s[:to]).cover?(slot) }[:port]
  end

  # `count` queue names (from `candidates`) whose `{name}` tags live on different
  # masters, in order of the masters.
  def queues_on_different_masters(count, prefix: "q")
    found = {}
    (0..10_000).each do |i|
      name = "#{prefix}#{i}"
      found[port_of("{#{name}}")] ||= name
      return found.values.first(count) if found.size >= count
    end
    raise "could not find #{count} queues on different masters"
  end

  def node_id(port)
    ask(port, "CLUSTER", "MYID")
  end

  # Moves one slot from its master to the master on `to_port` the way
  # `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, MIGRATE the keys in
  # batches while clients follow ASK, then SETSLOT NODE on both.
  def migrate_slot(slot, to_port, batch: 10)
    from_port = slots.find { |s| (s[:from]..s[:to]).cover?(slot) }[:port]
    return if from_port == to_port

    from_id = node_id(from_port)
    to_id = node_id(to_port)
    ask(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", from_id)
    ask(from_port, "CLUSTER", "SETSLOT", slot, "MIGRATING", to_id)
    loop do
      keys = ask(from_port, "CLUSTER", "GETKEYSINSLOT", slot, batch)
      break if keys.nil? || keys.empty?

      reply = ask(from_port, "MIGRATE", "127.0.0.1", to_port, "", 0, 5000, "KEYS", *keys)
      raise "MIGRATE failed: #{reply.inspect}" if reply.is_a?(String) && reply.start_with?("ERR", "IOERR", "BUSYKEY")
    end
    [to_port, from_port].each { |p| ask(p, "CLUSTER", "SETSLOT", slot, "NODE", to_id) }
    masters.each { |p| ask(p, "CLUSTER", "SETSLOT", slot, "NODE", to_id) unless [to_port, from_port].include?(p) }
  end

  def server(port)
    @nodes.find { |n| n.port == port }
  end

  # Sends one command in RESP to a port (authenticated, over TLS when the nodes
  # speak it); returns the reply.
  def ask(port, *args) = Resp.ask(port, *args, password: @password, tls: !@tls.nil?)

  private

  def cli_options
    options = []
    options += ["-a", @password, "--no-auth-warning"] if @password
    options += ["--tls", "--cacert", @tls[:ca]] if @tls
    options
  end

  def wait_until_ok
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 30
    until @nodes.all? { |n| ask(n.port, "CLUSTER", "INFO").to_s.include?("cluster_state:ok") } && replicas_synced?
      raise "the cluster did not become ok" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.1
    end
  end

  def replicas_synced?
    return true if @replicas.zero?

    @nodes.all? do |n|
      info = ask(n.port, "INFO", "replication").to_s
      info.include?("role:master") || info.include?("master_link_status:up")
    end
  end
end
