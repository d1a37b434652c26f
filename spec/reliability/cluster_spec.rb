# frozen_string_literal: true

require "tmpdir"

# Redis Cluster of the spec's own (3 masters; with replicas for the failover): queues
# whose tags hash to different masters, a busy queue's slot migrated while jobs flow,
# and a master killed. (bin/test's cluster pass runs the engine's end-to-end specs on
# a cluster too.)
RSpec.describe "Redis Cluster" do
  def configure_for(cluster)
    FiberJob.reset!
    FiberJob.logger = Logger.new(File::NULL) unless ENV["FIBER_JOB_SPEC_LOG"]
    FiberJob.configure do |c|
      c.redis_cluster = cluster.seed_urls
      c.network_timeout = 2
    end
  end

  before { @dir = Dir.mktmpdir("fiber_job-cluster-runs") }

  after do
    kill_spawned
    @cluster&.cleanup
    FileUtils.rm_rf(@dir)
  end

  def lines(pattern) = lines_in(@dir, pattern)

  RUN_JOB = <<~RUBY
    class ClusterJob < FiberJob::Job
      def perform(i, *) = File.open(File.join(ENV.fetch("RUNS"), "ran-\#{Process.pid}"), "a") { |f| f.puts("\#{i} \#{Time.now.to_f}") }
    end
  RUBY

  # A producer process: enqueues `total` ClusterJobs on `queue` at about `rate` a
  # second, writing each acknowledged one down; retries what raised.
  def start_cluster_producer(total, queue:, rate: 400)
    start_producer(total, dir: @dir, prelude: RUN_JOB, enqueue: "FiberJob.const_get(:Internal)::Enqueue.push(ClusterJob, [i], queue: #{queue.dump})",
                   pause: 1.0 / rate, env: { "RUNS" => @dir })
  end

  def start_cluster_workers(count, queue)
    Array.new(count) do
      spawn_ruby(<<~RUBY, env: { "RUNS" => @dir })
        #{RUN_JOB}
        FiberJob::Worker.new(queues: [#{queue.dump}], concurrency: 5).start
      RUBY
    end
  end

  # [acked, ran, lost, ran twice] once every acknowledged job ran (or the timeout).
  def settle(producer, workers)
    expect(wait_process(producer, timeout: 90).exitstatus).to eq(0)
    acked = lines("acked").map { |(i)| i.to_i }
    wait_for(timeout: 60, message: "every acknowledged job") { (acked - lines("ran-*").map { |i, _| i.to_i }).empty? }
    expect(stop_workers(workers).map(&:exitstatus)).to all(eq(0))
    ran = lines("ran-*").map { |i, _| i.to_i }
    [acked.uniq, ran, (acked.uniq - ran.uniq).size, ran.tally.count { |_, n| n > 1 }]
  end

  context "with 3 masters" do
    before do
      @cluster = ClusterGroup.new(masters: 3).start
      configure_for(@cluster)
    end

    it "works queues on different masters: arguments, limits, scheduling, dead jobs, stats, with no cross-slot error" do
      queues = @cluster.queues_on_different_masters(3)
      expect(queues.map { |q| @cluster.port_of("{#{q}}") }.uniq.size).to eq(3)
      stub_const("SlotJob", Class.new(FiberJob::Job) do
        def initialize
          super
          @max_retries = 0
        end

        def perform(tag, args)
          raise ArgumentError, "unwanted #{tag}" if tag == "fail"

          FiberJob.const_get(:Internal).enqueue._push("record", [JSON.generate([tag, args])])
        end
      end)
      args = [1, "two", { "three" => [3.5, nil, true] }]
      queues.each { |q| FiberJob.const_get(:Internal)::Enqueue.push(SlotJob, [q, args], queue: q) }
      FiberJob.const_get(:Internal)::Enqueue.push(SlotJob, ["fail", []], queue: queues[2])
      with_worker(queues: queues, concurrency: 2) do
        wait_for(timeout: 15, message: "every job") do
          records.size == 3 && FiberJob::Queue.totals[:dead] == 1
        end
      end
      expect(records.map { |r| JSON.parse(r) }).to contain_exactly(*queues.map { |q| [q, args] })
      dead = FiberJob::Queue.dead_jobs
      expect(dead.map { |d| [d["queue"], d["error_class"]] }).to eq([[queues[2], "ArgumentError"]])
      metrics = FiberJob::Queue.metrics(queues)
      expect(queues.map { |q| metrics[q][:processed] }).to eq([1, 1, 1])
      expect(queues.map { |q| metrics[q][:failed] }).to eq([0, 0, 1])
      expect(FiberJob::Queue.totals).to include(dead: 1)
      expect(FiberJob::Queue.retry_dead(dead.first["jid"])).to be(true)
      expect(FiberJob::Queue.stats(queues[2])[:size]).to eq(1)
      expect(FiberJob::Queue.clear(queues[2])).to eq(1)
    end

    it "follows MOVED and ASK while a busy queue's slot migrates to another master, losing nothing" do
      queue = @cluster.queues_on_different_masters(1).first
      workers = start_cluster_workers(2, queue)
      producer, producer_log = start_cluster_producer(3000, queue: queue)
      wait_for(timeout: 30, message: "jobs flowing") { lines("ran-*").size >= 300 }
      slot = @cluster.slot_of("{#{queue}}")
      from = @cluster.port_of("{#{queue}}")
      to = (@cluster.masters - [from]).first
      # Three moves, each while jobs flow: away, on to the third master, back home.
      started = Time.now.to_f
      [to, (@cluster.masters - [from, to]).first, from].each do |port|
        @cluster.migrate_slot(slot, port, batch: 1)
        expect(@cluster.port_of("{#{queue}}")).to eq(port)
        sleep 0.5
      end
      migrated_in = Time.now.to_f - started
      acked, ran, lost, twice = settle(producer, workers)
      puts format("\n    cluster reshard: slot %d of queue %s moved :%d → :%d → another master → back, in %.2fs while jobs flowed; " \
                  "%d acknowledged, %d ran, %d lost, %d ran twice; %s",
                  slot, queue, from, to, migrated_in, acked.size, ran.uniq.size, lost, twice,
                  File.read(producer_log).lines.grep(/producer done|enqueue failed/).map(&:strip).join("; "))
      expect(acked.size).to eq(3000)
      expect(lost).to eq(0)
      logs = Dir[File.join(Dir.tmpdir, "fiber_job-proc*", "out.log")].map { |f| File.read(f) }.join
      expect(logs).not_to include("CROSSSLOT")
    end
  end

  context "with 3 masters speaking only TLS and requiring a password" do
    before do
      @pki = Certificates.new
      cert, key = @pki.pair("server")
      client_cert, client_key = @pki.pair("client")
      tls = { cert: cert, key: key, ca: @pki.ca_file, client_cert: client_cert, client_key: client_key }
      @cluster = ClusterGroup.new(masters: 3, password: "cluster-s3cret", tls: tls).start
      FiberJob.reset!
      FiberJob.logger = Logger.new(@log = StringIO.new)
      FiberJob.configure do |c|
        c.redis_cluster = @cluster.seed_urls
        c.redis_tls = { ca_file: @pki.ca_file }
        c.network_timeout = 2
      end
    end

    after { @pki&.cleanup }

    it "enqueues, schedules and works jobs on every master, and never shows the password" do
      queues = @cluster.queues_on_different_masters(3)
      stub_const("TlsClusterJob", Class.new(FiberJob::Job) do
        def perform(tag) = FiberJob.const_get(:Internal).enqueue._push("record", [tag])
      end)
      queues.each { |q| FiberJob.const_get(:Internal)::Enqueue.push_bulk(TlsClusterJob, [["#{q}-a"], ["#{q}-b"]], queue: q) }
      FiberJob.const_get(:Internal)::Enqueue.schedule(TlsClusterJob, Time.now.to_f + 1, ["later"], queue: queues[1])
      with_worker(queues: queues, concurrency: 2) do
        wait_for(timeout: 15, message: "every job") { records.size == 7 }
      end
      expect(records).to contain_exactly(*queues.flat_map { |q| ["#{q}-a", "#{q}-b"] }, "later")
      expect(FiberJob::Queue.metrics(queues).values.map { |m| m[:processed] }).to eq([2, 3, 2])
      expect(FiberJob.config.redis_description).to include("rediss://:***@127.0.0.1")
      expect(FiberJob.config.redis_description).not_to include("cluster-s3cret")
      expect(@log.string).to include("worker", "rediss://:***@127.0.0.1") # its start line
      expect(@log.string).not_to include("cluster-s3cret")
    end
  end

  context "with 3 masters and a replica each", :slow do
    before do
      @cluster = ClusterGroup.new(masters: 3, replicas: 1).start
      configure_for(@cluster)
    end

    it "recovers when the master of a busy queue is killed; reports time to recover and what was lost" do
      queue = @cluster.queues_on_different_masters(1).first
      workers = start_cluster_workers(2, queue)
      producer, producer_log = start_cluster_producer(3000, queue: queue)
      wait_for(timeout: 30, message: "jobs flowing") { lines("ran-*").size >= 300 }
      victim = @cluster.port_of("{#{queue}}")
      killed_at = Time.now.to_f
      @cluster.server(victim).kill9
      wait_for(timeout: 30, message: "a replica promoted") do
        (p = @cluster.port_of("{#{queue}}")) && p != victim
      rescue NoMethodError
        false
      end
      promoted_after = Time.now.to_f - killed_at
      acked, ran, lost, twice = settle(producer, workers)
      first_after = lines("ran-*").map { |_, at| at.to_f }.select { |at| at > killed_at + promoted_after }.min
      puts format("\n    cluster failover: master :%d killed; replica promoted after %.1fs; jobs ran again %.1fs after " \
                  "the kill; %d acknowledged, %d ran, %d lost, %d ran twice; %s",
                  victim, promoted_after, first_after - killed_at, acked.size, ran.uniq.size, lost, twice,
                  File.read(producer_log).lines.grep(/producer done|enqueue failed/).map(&:strip).join("; "))
      expect(acked.size).to eq(3000)
      # Replication is asynchronous: what the master acknowledged in the instant before
      # it died may not have reached its replica (README, "Redis Cluster").
      expect(lost).to be <= 5
      expect(first_after - killed_at).to be < 20
    end
  end
end
