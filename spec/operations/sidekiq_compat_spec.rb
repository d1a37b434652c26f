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
  # The real Sidekiq the spawned clients and servers load: the newest installed (Debian's
  # 6.4 on Debian's Ruby), or the version FIBER_JOB_SIDEKIQ_VERSION names (7.3.10, 8.1.7).
  SIDEKIQ_VERSION = ENV.fetch("FIBER_JOB_SIDEKIQ_VERSION", "")
  SIDEKIQ_LOAD = <<~RUBY
    gem "sidekiq", #{SIDEKIQ_VERSION.dump} unless #{SIDEKIQ_VERSION.empty?}
    require "sidekiq"
    require "sidekiq/api"
  RUBY
  # The version that loads; 7.0 added `at:` to perform_bulk.
  SIDEKIQ_LOADED = IO.popen([RbConfig.ruby, "-e", "#{SIDEKIQ_LOAD}\nprint Sidekiq::VERSION"], err: File::NULL, &:read)
  BULK_AT = Gem::Version.new(SIDEKIQ_LOADED) >= Gem::Version.new("7.0")

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
    # The exhausted hook runs before the death is written (as in Sidekiq), so wait for it.
    wait_for(timeout: 5, message: "two dead jobs") { FiberJob::Queue.dead_jobs.size == 2 }
    dead = FiberJob::Queue.dead_jobs.map { |j| j["class"] }.sort
    expect(dead).to eq(%w[CompatFailJob CompatKillJob]) # :kill → dead at once
    expect(FiberJob::Queue.dead_jobs.find { |j| j["class"] == "CompatFailJob" }["queue"]).to eq("low")
    stop_workers(workers)
  end

  it "takes the options Sidekiq takes and refuses a bad retry with a clear error" do
    expect(CompatFailJob.get_sidekiq_options).to include("retry" => 2, "queue" => "low")
    expect { Class.new { include Sidekiq::Job }.sidekiq_options(retry: "often") }
      .to raise_error(ArgumentError, /retry: is true, false or a number/)
    expect(FiberJob.const_get(:Internal)::Processor.job_class("CompatJob")).to eq([CompatJob])
    expect(defined?(Sidekiq::VERSION)).to be_nil
    config = FiberJob::Configuration.new.tap { |c| c.redis_cluster = ["redis://127.0.0.1:7000"] }
    config.sidekiq_compat = true
    expect { config.check! }
      .to raise_error(FiberJob::ConfigurationError, /sidekiq_compat needs a single Redis/)
  end

  it "works 10,000 jobs pushed by Sidekiq's own client (immediate, scheduled, retry: 2), losing none to a kill -9" do
    pusher, out = spawn_ruby(<<~RUBY)
      #{SIDEKIQ_LOAD}
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
    expect(File.read(out)).to include("pushed #{SIDEKIQ_LOADED}")
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
    puts "\n    10,000 pushed by Sidekiq #{File.read(out)[/pushed (\S+)/, 1]}; worker killed -9 after #{ids.size > 2000 ? "2,000+" : ids.size}: " \
         "#{ids.uniq.size} distinct ran, #{ids.size - ids.uniq.size} repeated (at least once)"
    expect(ids.uniq.sort).to eq((0...9999).to_a)
    expect(ran.select { |r| r[1].to_i >= 9500 }.map { |r| r[2] }.uniq).to eq(["low"])
    expect(records.grep(/\Afail s/)).to eq(["fail s 0", "fail s 1", "fail s 2"])
    wait_for(timeout: 5, message: "the dead job") { FiberJob::Queue.dead_jobs.any? } # written after the exhausted hook
    expect(FiberJob::Queue.dead_jobs.map { |j| j["class"] }).to eq(["CompatFailJob"])
    expect(%w[queue:default queue:low].map { |k| redis.llen(k) } + [redis.zcard("schedule")]).to eq([0, 0, 0])
    stop_workers(workers)
  end

  it "moves Sidekiq's dead set into FiberJob's, where a dead job can be retried" do
    killer, out = spawn_ruby(<<~RUBY)
      #{SIDEKIQ_LOAD}
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

  it "takes over from a live Sidekiq server: its retry and dead sets, perform_bulk with at:, in Sidekiq's own time format" do
    dir = Dir.mktmpdir("fiber_job-sidekiq")
    File.write(File.join(dir, "jobs.rb"), <<~RUBY)
      class CompatFailJob
        include Sidekiq::Job
        sidekiq_options retry: 2, queue: "low"
        sidekiq_retry_in { |_count, _error| 0.5 }
        def perform(x) = raise("nope \#{x}")
      end
      class CompatDeadJob
        include Sidekiq::Job
        sidekiq_options retry: 0
        def perform(x) = raise("dead \#{x}")
      end
    RUBY
    script = File.join(dir, "sidekiq.rb")
    File.write(script, <<~RUBY)
      #{SIDEKIQ_LOAD}
      $stdout.sync = true
      ARGV.replace(["-r", #{File.join(dir, "jobs.rb").dump}, "-q", "default", "-q", "low", "-c", "2"])
      load Gem.bin_path("sidekiq", "sidekiq")
    RUBY
    log = File.join(dir, "sidekiq.log")
    server = Process.spawn({ "REDIS_URL" => FiberJob.config.redis_url }, RbConfig.ruby, script, out: log, err: %i[child out],
                           pgroup: true)
    (@spawned ||= []) << server
    pusher, out = spawn_ruby(<<~RUBY)
      #{SIDEKIQ_LOAD}
      Sidekiq.configure_client { |c| c.redis = { url: #{FiberJob.config.redis_url.dump} } }
      require #{File.join(dir, "jobs.rb").dump}
      CompatFailJob.perform_async("r")
      CompatDeadJob.perform_async("d")
      puts "pushed \#{Sidekiq::VERSION}"
    RUBY
    expect(wait_process(pusher).exitstatus).to eq(0), File.read(out)
    wait_for(timeout: 30, message: "Sidekiq's retry and dead entries (#{log})") do
      redis.zcard("retry") == 1 && redis.zcard("dead") == 1
    end
    Process.kill("TERM", server)
    wait_process(server, timeout: 30)
    sidekiq_retry = JSON.parse(redis.zrange("retry", 0, -1).first)
    expect(sidekiq_retry).to include("retry_count" => 0, "error_message" => "nope r")

    bulk, out = spawn_ruby(<<~RUBY)
      #{SIDEKIQ_LOAD}
      Sidekiq.configure_client { |c| c.redis = { url: #{FiberJob.config.redis_url.dump} } }
      class CompatJob
        include Sidekiq::Job
      end
      at = Time.now.to_f + 1
      Sidekiq::Client.push_bulk("class" => CompatJob, "args" => [[101, "bulk_at"], [102, "bulk_at"]], "at" => [at, at])
      CompatJob.perform_bulk([[103, "bulk"]])
      CompatJob.set(wait_until: at).perform_bulk([[104, "bulk_at"]]) if Sidekiq::VERSION >= "7"
      puts "at \#{at}"
    RUBY
    expect(wait_process(bulk).exitstatus).to eq(0), File.read(out)
    at = File.read(out)[/at (\S+)/, 1].to_f

    workers = start_workers(1, COMPAT_JOBS, config: COMPAT_CONFIG)
    begin
      wait_for(timeout: 30, message: "the jobs to run") do # Sidekiq adds up to 10 s of jitter to a retry
        records.grep(/\Aexhausted r/).any? && ran.size >= (BULK_AT ? 4 : 3)
      end
    rescue RuntimeError
      raise "#{$!.message}; records: #{records.inspect}"
    end
    # Sidekiq failed it once (retry_count 0); FiberJob's CompatFailJob runs it twice more.
    expect(records.grep(/\Afail r/)).to eq(["fail r 1", "fail r 2"])
    bulk_ran = ran.select { |r| r[2] == "bulk_at" }
    expect(bulk_ran.map { |r| r[1] }.sort).to eq(BULK_AT ? %w[101 102 104] : %w[101 102])
    # The exhausted hook runs before the death is written (as in Sidekiq), so wait for it.
    wait_for(timeout: 5, message: "two dead jobs") { FiberJob::Queue.dead_jobs.size == 2 }
    dead = FiberJob::Queue.dead_jobs.to_h { |j| [j["class"], j] }
    expect(dead.keys).to contain_exactly("CompatFailJob", "CompatDeadJob")
    expect(dead["CompatDeadJob"]["error"]).to eq("RuntimeError: dead d (died under Sidekiq)")
    # Times in seconds, whatever Sidekiq wrote (8.x: integer milliseconds).
    %w[created_at failed_at].each do |field|
      expect(dead["CompatDeadJob"][field]).to be_within(120).of(Time.now.to_f), "#{field}: #{dead["CompatDeadJob"][field]}"
    end
    expect(FiberJob::Queue.metrics.values.map { |m| m[:latency] }).to all(be < 60)
    expect(%w[queue:default queue:low].map { |k| redis.llen(k) } + %w[schedule retry dead].map { |k| redis.zcard(k) })
      .to eq([0, 0, 0, 0, 0])
    puts "\n    Sidekiq #{File.read(log)[/Sidekiq (\d+\.\d+\.\d+)/, 1] || SIDEKIQ_LOADED} server's retry and dead " \
         "entries, run or kept by FiberJob; bulk at: ran #{bulk_ran.size}, #{at.round(1)}"
    stop_workers(workers)
  ensure
    FileUtils.rm_rf(dir) if dir
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
