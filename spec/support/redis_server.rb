# frozen_string_literal: true

require "socket"
require "tmpdir"
require "fileutils"

# A redis-server process of the test suite's own, on a free port, so specs can stop,
# kill and restart it to inject faults without touching any other Redis.
class RedisServer
  attr_reader :port, :dir

  # @param args [Array<String>] extra redis-server arguments (e.g. --requirepass)
  # @param tls [Hash, nil] { cert:, key:, ca:, auth_clients: false }: TLS only, no
  #   plain port
  def initialize(aof: false, args: [], tls: nil)
    @aof = aof
    @args = args
    @tls = tls
    @dir = Dir.mktmpdir("fiber_job-redis")
    @port = free_port
    @pid = nil
  end

  def url(db = 0)
    "#{@tls ? "rediss" : "redis"}://127.0.0.1:#{@port}/#{db}"
  end

  def start
    args = ["redis-server", "--bind", "127.0.0.1", "--dir", @dir,
            "--save", "", "--daemonize", "no", "--logfile", File.join(@dir, "redis.log")]
    args += if @tls
              ["--port", "0", "--tls-port", @port.to_s, "--tls-cert-file", @tls[:cert], "--tls-key-file", @tls[:key],
               "--tls-ca-cert-file", @tls[:ca], "--tls-auth-clients", @tls[:auth_clients] ? "yes" : "no"]
            else
              ["--port", @port.to_s]
            end
    args += @aof ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]
    args += @args
    @pid = Process.spawn(*args, out: File::NULL, err: File::NULL)
    wait_until_up
    self
  end

  def running?
    !@pid.nil?
  end

  # Graceful stop: TERM (with --save "" nothing is written unless AOF is on).
  def stop
    signal("TERM")
  end

  # Crash: nothing is flushed.
  def kill9
    signal("KILL")
  end

  # Freezes the server (SIGSTOP): connections stay open, nothing answers.
  def pause
    Process.kill("STOP", @pid) if @pid
  end

  def resume
    Process.kill("CONT", @pid) if @pid
  end

  def cleanup
    resume
    stop
    FileUtils.rm_rf(@dir)
  end

  private

  def signal(name)
    return unless @pid

    Process.kill(name, @pid)
    Process.wait(@pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  ensure
    @pid = nil
  end

  def free_port
    self.class.free_port
  end

  # A TCP port nothing listens on now.
  def self.free_port
    server = TCPServer.new("127.0.0.1", 0)
    server.addr[1]
  ensure
    server&.close
  end

  def wait_until_up
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    # A TLS port cannot be pinged in plain text: wait for the server's word instead.
    if @tls
      log = File.join(@dir, "redis.log")
      sleep 0.02 until (File.exist?(log) && File.read(log).include?("Ready to accept connections")) ||
                       Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      return if File.read(log).include?("Ready to accept connections")

      raise "redis-server (TLS) on port #{@port} did not start: #{File.read(log)[-500..]}"
    end
    loop do
      begin
        TCPSocket.open("127.0.0.1", @port) do |s|
          s.write("PING\r\n")
          reply = s.gets.to_s
          return if reply.start_with?("+PONG", "-NOAUTH")
        end
      rescue Errno::ECONNREFUSED, Errno::ECONNRESET, IOError
        nil
      end
      raise "redis-server on port #{@port} did not start" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.02
    end
  end
end
