# frozen_string_literal: true

# W8's ceiling: the same GETs from a bare Async loop of CONC fibers, no job system —
# what this client and server can do on this machine. Prints {"jobs_per_s": …}.
# Usage: ruby bench/http_ceiling.rb URL N CONC
require "async"
require "net/http"
require "json"

url, n, conc = ARGV[0], Integer(ARGV[1]), Integer(ARGV[2])
uri = URI(url)
started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
Async do |task|
  conc.times.map { |i| task.async { (n / conc + (i < n % conc ? 1 : 0)).times { Net::HTTP.get_response(uri).value } } }.each(&:wait)
end
puts JSON.generate("jobs_per_s" => n / (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started))
