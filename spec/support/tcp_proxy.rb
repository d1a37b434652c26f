# frozen_string_literal: true

require "socket"

# A TCP proxy between FiberJob and a redis-server that can drop a connection at the
# worst moment: after Redis answered and before the answer reaches the client, so the
# command was applied and its reply is lost. With `cut_chance` p, each chunk Redis
# sends is, with probability p (seeded), not passed on: both sides of that connection
# are closed instead. Threads only; `stop` closes everything it opened.
class TcpProxy
  attr_reader :port, :cuts
  attr_accessor :cut_chance

  def initialize(upstream_port, seed: 1)
    @upstream_port = upstream_port
    @server = TCPServer.new("127.0.0.1", 0)
    @port = @server.addr[1]
    @rng = Random.new(seed)
    @cut_chance = 0.0
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

  def stop
    @server.close unless @server.closed?
    @mutex.synchronize { @sockets.each { |s| s.close unless s.closed? } }
    @threads.each { |t| t.join(2) || t.kill }
  end

  private

  def relay(client)
    upstream = TCPSocket.new("127.0.0.1", @upstream_port)
    pair = [client, upstream]
    @mutex.synchronize { @sockets.concat(pair) }
    @threads << Thread.new { pump(client, upstream, pair, replies: false) }
    @threads << Thread.new { pump(upstream, client, pair, replies: true) }
  rescue SystemCallError
    client.close
  end

  def pump(from, to, pair, replies:)
    loop do
      data = from.readpartial(65_536)
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
  end

  def cut?
    chance = @cut_chance
    chance.positive? && @mutex.synchronize { @rng.rand < chance }
  end
end
