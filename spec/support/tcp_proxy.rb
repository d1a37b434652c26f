# frozen_string_literal: true

require "socket"

# A TCP proxy between FiberJob and a redis-server that injects network faults:
# - `cut_chance` p: each chunk Redis sends is, with probability p (seeded), not passed
#   on: both sides of that connection are closed instead — the worst moment, after
#   Redis applied a command and before its reply arrives;
# - `latency` seconds added before each chunk is passed on, both ways;
# - `stall!`/`unstall!`: connections stay open and nothing passes (a hung link);
# - `partition!`/`heal!`: every connection is dropped and new ones are closed at once;
# - `drop_all`: drops the connections open now (the client reconnects).
# Threads only; `stop` closes everything it opened.
class TcpProxy
  attr_reader :port, :cuts
  attr_accessor :cut_chance, :latency

  def initialize(upstream_port, seed: 1)
    @upstream_port = upstream_port
    @server = TCPServer.new("127.0.0.1", 0)
    @port = @server.addr[1]
    @rng = Random.new(seed)
    @cut_chance = 0.0
    @latency = 0.0
    @stalled = false
    @partitioned = false
    @cuts = 0
    @mutex = Mutex.new
    @sockets = []
    @threads = []
  end

  def url = "redis://127.0.0.1:#{port}"

  def start
    @threads << Thread.new do
      loop { relay(@server.accept) }
    rescue IOError, SystemCallError
      nil # stopped
    end
    self
  end

  def stall! = @stalled = true
  def unstall! = @stalled = false

  def partition!
    @partitioned = true
    drop_all
  end

  def heal! = @partitioned = false

  def drop_all
    @mutex.synchronize do
      @sockets.each { |s| s.close unless s.closed? }
      @sockets.clear
    end
  end

  def stop
    @server.close unless @server.closed?
    drop_all
    @threads.each { |t| t.join(2) || t.kill }
  end

  private

  def relay(client)
    return client.close if @partitioned

    upstream = TCPSocket.new("127.0.0.1", @upstream_port)
    pair = [client, upstream]
    @mutex.synchronize do
      @threads.select!(&:alive?)
      @sockets.concat(pair)
    end
    @threads << Thread.new { pump(client, upstream, pair, replies: false) }
    @threads << Thread.new { pump(upstream, client, pair, replies: true) }
  rescue SystemCallError
    client.close
  end

  def pump(from, to, pair, replies:)
    loop do
      data = from.readpartial(65_536)
      sleep 0.01 while @stalled && !from.closed?
      sleep @latency if @latency.positive?
      if replies && cut?
        @mutex.synchronize { @cuts += 1 }
        break
      end
      to.write(data)
    end
  rescue IOError, SystemCallError
    nil # the other side closed
  ensure
    pair.each { |s| s.close unless s.closed? }
    @mutex.synchronize { pair.each { |s| @sockets.delete(s) } }
  end

  def cut?
    chance = @cut_chance
    chance.positive? && @mutex.synchronize { @rng.rand < chance }
  end
end
