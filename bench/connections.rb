# frozen_string_literal: true

# Connection benchmarks, FiberJob only (the question is what a connection option costs
# FiberJob, not how it compares to Sidekiq), each pair in one run, rounds interleaved:
#   C1  W1 (100,000 no-op jobs, concurrency 10) over TLS vs plain TCP, prefetch 100 and 0
#   C2  50,000 × perform_async from one thread with a replica: redis_wait_replicas 0 vs 1
#   C3  50,000 × perform_async from one thread over TLS vs plain TCP (the direct path)
# Usage: ruby bench/connections.rb [C1] [C2] [C3]  (ROUNDS=3); bench/run C1 C2 C3 calls it.
require "json"
require "open3"
require "socket"
require "tmpdir"
require "fileutils"
require "timeout"
$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "fiber_job"

BENCH = __dir__
ROUNDS = Integer(ENV.fetch("ROUNDS", "3"))
DIR = Dir.mktmpdir("fiber_job-bench-conn")
PIDS = []
at_exit do
  PIDS.each do |pid|
    Process.kill("TERM", pid)
    Process.wait(pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end
  FileUtils.rm_rf(DIR)
end

def free_port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }

def redis_server(*args, log:)
  PIDS << Process.spawn("redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", DIR,
                        "--logfile", File.join(DIR, log), *args, out: File::NULL)
  sleep 0.05 until File.exist?(File.join(DIR, log)) && File.read(File.join(DIR, log)).include?("Ready to accept")
end

def openssl(*args)
  out, status = Open3.capture2e("openssl", *args, chdir: DIR)
  raise out unless status.success?
end

# A CA and a server certificate for 127.0.0.1.
def certificates
  File.write(File.join(DIR, "ext.cnf"), "[s]\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
  openssl("genrsa", "-out", "ca.key", "2048")
  openssl("req", "-x509", "-new", "-nodes", "-key", "ca.key", "-days", "1", "-subj", "/CN=bench CA", "-out", "ca.pem")
  openssl("genrsa", "-out", "s.key", "2048")
  openssl("req", "-new", "-key", "s.key", "-subj", "/CN=127.0.0.1", "-out", "s.csr")
  openssl("x509", "-req", "-in", "s.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "s.pem",
          "-days", "1", "-extfile", "ext.cnf", "-extensions", "s")
end

def use(url, tls_ca: nil, wait: 0)
  FiberJob.reset!
  FiberJob.configure do |c|
    c.redis_url = url
    c.redis_tls = tls_ca && { ca_file: tls_ca }
    c.redis_wait_replicas = wait
    c.log_level = :warn
  end
end

class FiberBench < FiberJob::Job; end

# One W1 round against the Redis `url`; returns jobs/s measured inside the worker.
def w1_round(url, prefetch, tls_ca: nil)
  use(url, tls_ca: tls_ca)
  FiberJob::Queue.clear("default")
  FiberJob::Queue.clear("bench_result")
  (0...100_000).each_slice(1000) { |s| FiberBench.perform_bulk(s.map { |i| [i] }) }
  env = { "REDIS_URL" => url, "MODE" => "noop", "N" => "100000", "CONC" => "10", "PREFETCH" => prefetch.to_s,
          "TLS_CA" => tls_ca }.compact
  pid = Process.spawn(env, RbConfig.ruby, File.join(BENCH, "fiber_job_worker.rb"), out: File::NULL)
  json = Timeout.timeout(300) do
    loop do
      found = FiberJob::Queue.jobs("bench_result", limit: 1).first
      break found if found

      sleep 0.02
    end
  end
  Process.kill("TERM", pid)
  Process.wait(pid)
  json["jobs_per_s"]
end

def enqueue_round(url, wait, tls_ca: nil)
  out = IO.popen({ "REDIS_URL" => url, "WAIT_REPLICAS" => wait.to_s, "TLS_CA" => tls_ca },
                 [RbConfig.ruby, File.join(BENCH, "enqueue.rb"), "fiber_job", "single", "50000"], &:read)
  JSON.parse(out)["jobs_per_s"]
end

def median(values) = values.sort[values.size / 2]
def range(values) = "[#{values.min.round}..#{values.max.round}]"

def report(id, title, a_name, a, b_name, b)
  puts format("%-3s %-50s %s %d jobs/s %s, %s %d jobs/s %s: %s %.1f%%", id, title, a_name, median(a), range(a), b_name,
              median(b), range(b), b_name, (median(b) - median(a)) * 100.0 / median(a))
  $stdout.flush
end

selected = ARGV.empty? ? %w[C1 C2 C3] : ARGV.map(&:upcase)
plain_port = free_port
redis_server("--port", plain_port.to_s, log: "plain.log")
plain = "redis://127.0.0.1:#{plain_port}/0"

if selected.intersect?(%w[C1 C3])
  certificates
  tls_port = free_port
  redis_server("--port", "0", "--tls-port", tls_port.to_s, "--tls-cert-file", File.join(DIR, "s.pem"),
               "--tls-key-file", File.join(DIR, "s.key"), "--tls-ca-cert-file", File.join(DIR, "ca.pem"),
               "--tls-auth-clients", "no", log: "tls.log")
  tls = "rediss://127.0.0.1:#{tls_port}/0"
  ca = File.join(DIR, "ca.pem")
end

if selected.include?("C1")
  [100, 0].each do |prefetch|
    tcp_runs = []
    tls_runs = []
    ROUNDS.times do
      tcp_runs << w1_round(plain, prefetch)
      tls_runs << w1_round(tls, prefetch, tls_ca: ca)
    end
    report("C1", "W1 over TLS vs plain TCP (prefetch #{prefetch})", "TCP", tcp_runs, "TLS", tls_runs)
  end
end

if selected.include?("C2")
  replica_port = free_port
  redis_server("--port", replica_port.to_s, "--replicaof", "127.0.0.1", plain_port.to_s, log: "replica.log")
  sleep 0.1 until IO.popen(["redis-cli", "-p", replica_port.to_s, "info", "replication"], &:read).include?("master_link_status:up")
  without = []
  with = []
  ROUNDS.times do
    without << enqueue_round(plain, 0)
    with << enqueue_round(plain, 1)
  end
  report("C2", "perform_async ×50,000, one thread, one replica", "wait 0", without, "wait 1", with)
end

if selected.include?("C3")
  tcp_runs = []
  tls_runs = []
  ROUNDS.times do
    tcp_runs << enqueue_round(plain, 0)
    tls_runs << enqueue_round(tls, 0, tls_ca: ca)
  end
  report("C3", "perform_async ×50,000, one thread, TLS vs plain TCP", "TCP", tcp_runs, "TLS", tls_runs)
end
