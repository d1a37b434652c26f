# frozen_string_literal: true

# W8's HTTP server: answers every request after DELAY seconds (default 0.05), as an
# API or an LLM endpoint would, a thread per connection so any number wait at once.
# Prints its port on the first line of stdout, then serves until killed.
require "socket"

delay = Float(ENV.fetch("DELAY", "0.05"))
server = TCPServer.new("127.0.0.1", 0)
$stdout.puts server.addr[1]
$stdout.flush
body = "ok\n"
loop do
  client = server.accept
  Thread.new(client) do |c|
    nil until c.gets.to_s.chomp.empty? # the request line and headers
    sleep delay
    c.write("HTTP/1.1 200 OK\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
  rescue IOError, SystemCallError
    nil
  ensure
    c.close
  end
end
