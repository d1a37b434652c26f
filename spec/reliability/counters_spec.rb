# frozen_string_literal: true

# The counters (Queue.totals, metrics, throughput) count each run once, also when
# connections drop between Redis applying a worker's acks and the reply reaching it —
# the worker then sends its counts again. Real worker processes behind a TCP proxy that
# cuts connections at that moment, at random (seeded). And no job runs twice.
RSpec.describe "counters under dropped connections" do
  it "counts every run once when replies are lost and the acker sends its counts again" do
    proxy = TcpProxy.new(TEST_REDIS.port, seed: 29).start
    log = File.join(Dir.mktmpdir("fiber_job-counters"), "runs.log")
    jobs = <<~RUBY
      class CountedJob < FiberJob::Job
        def perform(i) = (sleep 0.002; File.open(#{log.dump}, "a") { |f| f.write("\#{i}\\n") })
      end
    RUBY
    workers = start_workers(2, jobs, config: "c.redis_url = #{proxy.url.dump}; c.network_timeout = 5")
    stub_const("CountedJob", Class.new(FiberJob::Job))
    (0...3000).each_slice(500) { |s| CountedJob.perform_bulk(s.map { |i| [i] }) }
    proxy.cut_chance = 0.1
    wait_for(timeout: 60, message: "half the jobs") { File.exist?(log) && File.readlines(log).size >= 1500 }
    proxy.cut_chance = 0.0
    ran = -> { File.exist?(log) ? File.readlines(log, chomp: true) : [] }
    wait_for(timeout: 60, message: "every job") { ran.call.uniq.size == 3000 }
    expect(stop_workers(workers).map(&:exitstatus)).to eq([0, 0]) # a stop sends every count
    runs = ran.call.size
    totals = FiberJob::Queue.totals
    windows = FiberJob::Queue.throughput(minutes: 10).sum { |w| w[:processed] }
    puts "\n    3,000 jobs, #{proxy.cuts} connections cut after Redis answered: #{runs} runs " \
         "(#{runs - 3000} again), counted processed=#{totals[:processed]}, queue #{FiberJob::Queue.metrics["default"][:processed]}, " \
         "throughput #{windows}"
    expect(proxy.cuts).to be >= 10
    # No process died and none lost its lease, so nothing was given back to run again:
    # a fetcher reconciling after a lost reply once put back a job that had just
    # finished, its ack still on the way (found by bin/chaos).
    expect(runs).to eq(3000)
    expect(totals[:processed]).to eq(runs)
    expect(FiberJob::Queue.metrics["default"][:processed]).to eq(runs)
    expect(windows).to eq(runs)
    expect(FiberJob::ClassMetrics.for_class("CountedJob", minutes: 10)[:processed]).to eq(runs)
  ensure
    proxy&.stop
    FileUtils.rm_rf(File.dirname(log)) if log
  end
end
