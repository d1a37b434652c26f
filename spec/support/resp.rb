# frozen_string_literal: true

require "socket"
require "openssl"

# One command in RESP to a server the specs started, without a Redis library: what the
# Sentinel and Cluster groups use to drive and inspect their servers (CLUSTER, SENTINEL,
# MIGRATE...). Authenticates with `password`; speaks TLS (no verification) with `tls`.
module Resp
  module_function

  # @return the reply (Array, String, Integer or nil); nil when the server is down
  def ask(port, *args, password: nil, tls: false)
    Socket.tcp("127.0.0.1", port, connect_timeout: 1) do |tcp|
      io = tls ? tls_socket(tcp) : tcp
      if password
        io.write(encode(["AUTH", password]))
        read_reply(io)
      end
      io.write(encode(args))
      read_reply(io)
    end
  rescue SystemCallError, IOError, OpenSSL::SSL::SSLError
    nil
  end

  def encode(args) = "*#{args.size}\r\n" + args.map { |a| "$#{a.to_s.bytesize}\r\n#{a}\r\n" }.join

  def read_reply(io)
    line = io.gets("\r\n")&.chomp("\r\n")
    return nil if line.nil?

    case line[0]
    when "*" then line[1..].to_i.negative? ? nil : Array.new(line[1..].to_i) { read_reply(io) }
    when "$" then line[1..].to_i.negative? ? nil : io.read(line[1..].to_i + 2).chomp("\r\n")
    when ":" then line[1..].to_i
    else line[1..]
    end
  end

  def tls_socket(tcp)
    context = OpenSSL::SSL::SSLContext.new
    context.verify_mode = OpenSSL::SSL::VERIFY_NONE
    OpenSSL::SSL::SSLSocket.new(tcp, context).tap do |ssl|
      ssl.sync_close = true
      ssl.connect
    end
  end
end
