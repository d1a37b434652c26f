# frozen_string_literal: true

require "fiber_job/sidekiq"

# Switching from Sidekiq: Sidekiq job classes run unchanged under `require
# "fiber_job/sidekiq"`, and a worker with `sidekiq_compat` works what Debian's real
# Sidekiq 6.4 client pushes — real processes, a kill -9 among them.
RSpec.describe "Sidekiq compatibility" do
  COMPAT_JOBS = <<~RUBY
    require "fiber_job/sidekiq"

    class CompatJob
      include Sidekiq::Job
      sidekiq_options retry: 2
      def perform(i, tag = "ok")
        sleep 0.001
        Record.add("ran \#{i} \#{tag} \#{jid}")
      end
    end

    class CompatFailJob
      include Sidekiq::Worker
      sidekiq_options retry: 2, queue: "low"
      sidekiq_retry_in { |count, error| count.zero? ? 0.1 : 0.2 }
      sidekiq_retries_exhausted { |msg, error| Record.add("exhausted \#{msg["args"].first} \#{error.message}") }
      def perform(x)
        Record.add("fail \#{x} \#{retry_count}")
        raise "nope"
      end
    end

    class CompatKillJob
      include Sidekiq::Job
      sidekiq_retry_in { |_count, _error| :kill }
      def perform = raise("killed at once")
    end
  RUBY
  COMPAT_CONFIG = "c.sidekiq_compat = true; c.queues = %w[default low]; c.concurrency = 10"

  before(:all) { eval(COMPAT_JOBS.sub('require "fiber_job/sidekiq"', "")) } # rubocop:disable Security/Eval

  def ran = records.grep(/\Aran /).map(&:split)

  it "runs Sidekiq job classes unchanged: perform_async, set, perform_in, perform_bulk, Sidekiq::Client, retries, retries_exhausted" do
    workers = start_workers(1, COMPAT_JOBS, config: COMPAT_CONFIG)
    jid = CompatJob.perform_async(1)
    CompatJob.set(queue: "low").perform_async(2, "low")
    CompatJob.perform_in(0.3, 3, "later")
    CompatJob.set(wait: 0.3).perform_async(4, "wait")
    CompatJob.perform_bulk([[5], [6]])
    Sidekiq::Client.push("class" => CompatJob, "args" => [7, "client"])
    Sidekiq::Client.enqueue_to("low", CompatJob, 8, "enqueue_to")
    CompatFailJob.perform_async("x")
    CompatKillJob.perform_async
    wait_for(timeout: 15) { ran.size == 8 && records.any? { |r| r.start_with?("exhausted") } }
    expect(ran.map { |r| r[1].to_i }.sort).to eq((1..8).to_a)
    expect(ran.find { |r| r[1] == "1" }[3]).to eq(jid)
    expect(records.grep(/\Afail /)).to eq(["fail x 0", "fail x 1", "fail x 2"]) # retry: 2
    expect(records.grep(/\Aexhausted /)).to eq(["exhausted x nope"])
    dead = FiberJob::Queue.dead_jobs.map { |j| j["class"] }.sort
    expect(dead).to eq(%w[CompatFailJob CompatKillJob]) # :kill → dead at once
    expect(FiberJob::Queue.dead_jobs.find { |j| j["class"] == "CompatFailJob" }["queue"]).to eq("low")
    stop_workers(workers)
  end

  it "takes the options Sidekiq takes and refuses a bad retry with a clear error" do
    expect(CompatFailJob.get_sidekiq_options).to include("retry" => 2, "queue" => "low")
    expect { Class.new { include Sidekiq::Job }.sidekiq_options(retry: "often") }
      .to raise_error(ArgumentError, /retry: is true, false or a number/)
    expect(FiberJob::Processor.job_class("CompatJob")).to eq([CompatJob])
    expect(defined?(Sidekiq::VERSION)).to be_nil
    config = FiberJob::Configuration.new.tap { |c| c.redis_cluster = ["redis://127.0.0.1:7000"] }
    config.sidekiq_compat = true
    expect { config.check! }
      .to raise_error(FiberJob::ConfigurationError, /sidekiq_compat needs a single Redis/)
  end

  it "works 10,000 jobs pushed by Debian's Sidekiq 6.4 client (immediate, scheduled, retry: 2), losing none to a kill -9" do
    pusher, out = spawn_ruby(<<~RUBY)
      require "sidekiq"
      Sidekiq.configure_client { |c| c.redis = { url: #{FiberJob.config.redis_url.dump} } }
      class CompatJob
        include Sidekiq::Job
        sidekiq_options retry: 2
      end
      class CompatFailJob
        include Sidekiq::Job
        sidekiq_options retry: 2, queue: "low"
      end
      (0...9000).each_slice(1000) { |s| Sidekiq::Client.push_bulk("class" => CompatJob, "args" => s.map { |i| [i] }) }
      500.times { |i| CompatJob.perform_in(1, 9000 + i, "scheduled") }
      499.times { |i| CompatJob.set(queue: "low").perform_async(9500 + i, "low") }
      CompatFailJob.perform_async("s")
      puts "pushed \#{Sidekiq::VERSION}"
    RUBY
    expect(wait_process(pusher).exitstatus).to eq(0)
    expect(File.read(out)).to include("pushed 6.4")
    expect(redis.llen("queue:default")).to eq(9000)
    expect(redis.zcard("schedule")).to eq(500)

    workers = start_workers(2, COMPAT_JOBS, config: COMPAT_CONFIG)
    wait_for(timeout: 20) { ran.size > 2000 }
    victim, = workers.shift
    Process.kill("KILL", victim)
    wait_process(victim)
    workers += start_workers(1, COMPAT_JOBS, config: COMPAT_CONFIG)
    wait_for(timeout: 60, message: "all 9,999 to run") { ran.map { |r| r[1] }.uniq.size == 9999 }
    wait_for(timeout: 10) { records.grep(/\Aexhausted s/).any? }
    ids = ran.map { |r| r[1].to_i }
    puts "\n    10,000 pushed by Sidekiq #{File.read(out)[/6\.4\.\d+/]}; worker killed -9 after #{ids.size > 2000 ? "2,000+" : ids.size}: " \
         "#{ids.uniq.size} distinct ran, #{ids.size - ids.uniq.size} repeated (at least once)"
    expect(ids.uniq.sort).to eq((0...9999).to_a)
    expect(ran.select { |r| r[1].to_i >= 9500 }.map { |r| r[2] }.uniq).to eq(["low"])
    expect(records.grep(/\Afail s/)).to eq(["fail s 0", "fail s 1", "fail s 2"])
    expect(FiberJob::Queue.dead_jobs.map { |j| j["class"] }).to eq(["CompatFailJob"])
    expect(%w[queue:default queue:low].map { |k| redis.llen(k) } + [redis.zcard("schedule")]).to eq([0, 0, 0])
    stop_workers(workers)
  end

  it "moves Sidekiq's dead set into FiberJob's, where a dead job can be retried" do
    killer, out = spawn_ruby(<<~RUBY)
      require "sidekiq"
      require "sidekiq/api"
      Sidekiq.configure_client { |c| c.redis = { url: #{FiberJob.config.redis_url.dump} } }
      [["default", 41], ["low", 42]].each do |queue, arg|
        job = { "class" => "CompatJob", "args" => [arg, "revived"], "queue" => queue, "jid" => "%024x" % arg,
                "retry" => 2, "retry_count" => 2, "error_class" => "RuntimeError", "error_message" => "nope \#{arg}",
                "failed_at" => Time.now.to_f - 60 }
        Sidekiq::DeadSet.new.kill(Sidekiq.dump_json(job), notify_failure: false)
      end
      puts "killed \#{Sidekiq::DeadSet.new.size}"
    RUBY
    expect(wait_process(killer).exitstatus).to eq(0)
    expect(File.read(out)).to include("killed 2")
    # Entries that are not jobs (another program's): to the dead set, bytes kept.
    redis.zadd("dead", Time.now.to_f, "[1]")
    redis.zadd("retry", Time.now.to_f, "not json \xFF".b)
    workers = start_workers(1, COMPAT_JOBS, config: COMPAT_CONFIG)
    wait_for(timeout: 10) { FiberJob::Queue.dead_jobs.size == 4 }
    jobs, odd = FiberJob::Queue.dead_jobs.partition { |j| j["class"] }
    dead = jobs.sort_by { |j| j["args"].first }
    expect(dead.map { |j| [j["queue"], j["args"].first, j["error"]] })
      .to eq([["default", 41, "RuntimeError: nope 41 (died under Sidekiq)"], ["low", 42, "RuntimeError: nope 42 (died under Sidekiq)"]])
    expect(odd.map { |j| j["payload"] }.sort).to eq(["[1]", "not json \uFFFD"])
    expect(odd.map { |j| j["error"] }.sort).to eq(["FiberJob::UnknownJobError: Sidekiq's dead set held an entry that is not a job",
                                                   "FiberJob::UnknownJobError: Sidekiq's retry set held an entry that is not a job"])
    expect(redis.zcard("dead") + redis.zcard("retry")).to eq(0)
    expect(FiberJob::Queue.retry_dead(dead.last["jid"])).to be(true)
    wait_for(timeout: 10) { ran.any? { |r| r[1] == "42" } }
    expect(ran.find { |r| r[1] == "42" }[2]).to eq("revived")
    expect(FiberJob::Queue.dead_jobs.map { |j| j["args"]&.first }).to contain_exactly(41, nil, nil)
    stop_workers(workers)
  end

  it "runs a retry Sidekiq had scheduled, counting the failure Sidekiq already saw" do
    payload = { "class" => "CompatFailJob", "args" => ["r"], "queue" => "low", "jid" => "0123456789abcdef01234567",
                "retry" => 2, "retry_count" => 0, "error_message" => "nope", "failed_at" => Time.now.to_f }
    redis.zadd("retry", Time.now.to_f + 0.2, JSON.generate(payload))
    workers = start_workers(1, COMPAT_JOBS, config: COMPAT_CONFIG)
    wait_for(timeout: 10) { records.grep(/\Aexhausted r/).any? }
    # Sidekiq's retry_count 0 = one failure so far: FiberJob runs it twice more (retry: 2).
    expect(records.grep(/\Afail r/)).to eq(["fail r 1", "fail r 2"])
    expect(redis.zcard("retry")).to eq(0)
    stop_workers(workers)
  end
end
