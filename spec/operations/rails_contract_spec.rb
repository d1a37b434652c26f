# frozen_string_literal: true

require "open3"

# The adapter contract of the ActiveJob that runs here: Debian's 6.1, or the Rails
# source tree FIBER_JOB_RAILS_SRC names (7.2, 8.0, 8.1). `perform_all_later`'s bulk
# path, after-commit enqueues in a real Rails app on SQLite, and `stopping?` for Active
# Job Continuations, each through real `fiber_job` worker processes.
RSpec.describe "the ActiveJob adapter contract" do
  CONTRACT_JOBS = <<~RUBY
    module CtNote
      def self.add(*parts) = FiberJob.const_get(:Internal).enqueue._push("record", [JSON.generate(parts)])
    end

    class CtBulkJob < ActiveJob::Base
      def perform(n) = CtNote.add("bulk", n, queue_name, Time.now.to_f)
    end

    class CtUniqueJob < ActiveJob::Base
      fiber_job_options unique_for: 60
      def perform(n) = CtNote.add("unique", n)
    end

    class CtCommitJob < ActiveJob::Base
      def perform(what) = CtNote.add("commit", what)
    end

    if defined?(ActiveJob::Continuable)
      class CtStepJob < ActiveJob::Base
        include ActiveJob::Continuable
        self.resume_options = { wait: 0.2 }

        def perform(count)
          step :items do |step|
            (step.cursor || 0).upto(count - 1) do |i|
              CtNote.add("item", i, Process.pid)
              sleep 0.02
              step.set!(i + 1)
            end
          end
          step(:finish) { CtNote.add("finish", Process.pid, resumptions) }
        end
      end
    end
  RUBY

  let(:dir) { Dir.mktmpdir("fiber_job-rails") }

  before do
    require "active_job"
    require "fiber_job/active_job"
    ActiveJob::Base.queue_adapter = :fiber_job
    ActiveJob::Base.logger = Logger.new(nil)
    eval(CONTRACT_JOBS, TOPLEVEL_BINDING) unless defined?(CtBulkJob) # rubocop:disable Security/Eval
  end

  after { FileUtils.rm_rf(dir) unless ENV["KEEP"] }

  def version = Gem::Version.new(ActiveJob::VERSION::STRING)
  def adapter = ActiveJob::Base.queue_adapter
  def notes = records.map { |r| JSON.parse(r) }

  # A Rails app of the running version (Active Job's railtie, Active Record, the adapter
  # chosen in its config) with the jobs above, for `fiber_job -r <root>` and for
  # scripts that require its environment. On 7.2 it sets what `load_defaults 7.2` sets
  # for Active Job. Active Record's railtie and `load_defaults` are left out: they load
  # Action View, whose HTML sanitizer needs a newer nokogiri than Debian's.
  def rails_app(extra = "")
    root = File.join(dir, "app")
    FileUtils.mkdir_p(File.join(root, "config"))
    File.write(File.join(root, "config", "environment.rb"), <<~RUBY)
      require "rails"
      require "active_job/railtie"
      require "active_record"
      require "fiber_job"
      class ContractApp < Rails::Application
        #{version.segments.first(2) == [7, 2] ? "config.active_job.enqueue_after_transaction_commit = :default" : ""}
        config.root = #{root.dump}
        config.eager_load = false
        config.logger = Logger.new(nil)
        config.secret_key_base = "x" * 64
        config.active_job.queue_adapter = :fiber_job
      end
      Rails.application.initialize!
      ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: #{File.join(root, "app.db").dump})
      ActiveRecord::Base.connection.create_table(:accounts, if_not_exists: true) { |t| t.string :name }
      class Account < ActiveRecord::Base; end
      #{CONTRACT_JOBS}
      #{extra}
    RUBY
    root
  end

  # Runs `body` in a process that loaded the app; returns what it printed.
  def in_app(root, body)
    script = "require #{File.join(root, "config", "environment.rb").dump}\n#{body}"
    out, status = Open3.capture2e({ "REDIS_URL" => FiberJob.config.redis_url }, RbConfig.ruby, "-I", SpecHelpers::LIB,
                                  "-e", script)
    expect(status.exitstatus).to eq(0), out
    out
  end

  def worker(*args, log: File.join(dir, "worker.log"))
    spawn_fiber_job(*args, "-c", "5", log: log)
  end

  def stop(pid)
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
  end

  # `job.set(...)` (7.1+, for `perform_all_later`); ActiveJob 6.1's instances have no
  # `set`, only the accessors it would set.
  def with(job, queue: nil, wait: nil, wait_until: nil)
    return job.set({ queue: queue, wait: wait, wait_until: wait_until }.compact) if job.respond_to?(:set)

    job.queue_name = queue if queue
    job.scheduled_at = (wait_until || Time.now + wait).to_f if wait || wait_until
    job
  end

  def commands = redis.info("stats")["total_commands_processed"].to_i

  it "is the adapter class this ActiveJob expects" do
    expect(adapter).to be_a(ActiveJob::QueueAdapters::AbstractAdapter) if defined?(ActiveJob::QueueAdapters::AbstractAdapter)
    expect(adapter.enqueue_after_transaction_commit?).to be(true)
    expect([adapter.stopping?, adapter.stopping?(CtBulkJob.new(1))]).to eq([false, false])
  end

  it "enqueues a thousand jobs in a few round trips, sets each one's id and state, and runs each once" do
    due = Time.now.to_f + 1.5
    jobs = (0...900).map { |i| with(CtBulkJob.new(i), queue: i.even? ? "ct_a" : "ct_b") } +
           (900...1000).map { |i| with(CtBulkJob.new(i), wait_until: Time.at(due)) }
    uniques = [CtUniqueJob.new(7), CtUniqueJob.new(7), CtUniqueJob.new(8)]
    before = commands
    if ActiveJob.respond_to?(:perform_all_later)
      ActiveJob.perform_all_later(jobs + uniques)
    else
      expect(adapter.enqueue_all(jobs + uniques)).to eq(1002)
    end
    used = commands - before - 1
    puts "    perform_all_later of 1,003 jobs (100 scheduled, 3 unique): #{used} Redis commands"
    expect(used).to be <= 30

    jids = jobs.map(&:provider_job_id)
    expect(jids).to all(match(/\A\h{24}\z/))
    expect(jids.uniq.size).to eq(1000)
    expect(uniques.map { |j| j.provider_job_id.nil? }).to eq([false, true, false]) # the second duplicates the first
    if jobs.first.respond_to?(:successfully_enqueued?)
      expect((jobs + uniques).map(&:successfully_enqueued?).uniq).to eq([true])
      expect((jobs + uniques).map(&:enqueue_error).compact).to be_empty
    end
    expect(FiberJob::Queue.scheduled_jobs(limit: 200).size).to eq(100)
    expect(FiberJob::Queue.scheduled_jobs(limit: 200).map { |j| j["at"] }).to all(be_within(0.001).of(due))

    app = File.join(dir, "jobs.rb")
    File.write(app, <<~RUBY)
      require "active_job"
      require "fiber_job/active_job"
      ActiveJob::Base.queue_adapter = :fiber_job
      ActiveJob::Base.logger = Logger.new(nil)
      #{CONTRACT_JOBS}
    RUBY
    pid = worker("-q", "ct_a,ct_b,default", "-r", app)
    wait_for(message: "1,002 jobs run", timeout: 30) { records.size >= 1002 }
    sleep 0.3
    runs = notes.group_by(&:first)
    expect(runs["bulk"].map { |n| n[1] }.sort).to eq((0...1000).to_a)
    expect(runs["bulk"].to_h { |n| [n[1], n[2]] }.values_at(0, 1, 950)).to eq(%w[ct_a ct_b default])
    expect(runs["bulk"].select { |n| n[1] >= 900 }.map(&:last).min).to be >= due
    expect(runs["unique"].map(&:last).sort).to eq([7, 8])
    stop(pid)
  end

  it "returns the count of jobs written, and marks each job Redis refused with its error" do
    down = RedisServer.new.start
    FiberJob.configure do |c|
      c.redis_url = down.url
      c.network_timeout = 1
    end
    down.stop
    jobs = [CtBulkJob.new(1), with(CtBulkJob.new(2), wait: 60)]
    expect(adapter.enqueue_all(jobs)).to eq(0)
    expect(jobs.map(&:provider_job_id)).to eq([nil, nil])
    if jobs.first.respond_to?(:enqueue_error)
      expect(jobs.map(&:successfully_enqueued?)).to eq([false, false])
      expect(jobs.map { |j| j.enqueue_error.class }.uniq).to eq([ActiveJob::EnqueueError])
      expect(jobs.first.enqueue_error.message).to match(/FiberJob::\w+Error: .*Redis/)
    end
  ensure
    down&.cleanup
  end

  it "enqueues a job made inside a transaction once, after the commit, and never when it rolls back" do
    skip "ActiveJob #{version} has no enqueue_after_transaction_commit (Rails 7.2+)" if version < Gem::Version.new("7.2")

    # 7.2: :default (what `load_defaults 7.2` sets) asks the adapter; 8.0+: a boolean per job.
    root = rails_app(version >= Gem::Version.new("8.0") ? "CtCommitJob.enqueue_after_transaction_commit = true" : "")
    out = in_app(root, <<~RUBY)
      queued = -> { FiberJob::Queue.jobs("default").map { |j| j["wrapped"] } }
      puts "setting: \#{CtCommitJob.enqueue_after_transaction_commit.inspect}"
      ActiveRecord::Base.transaction do
        Account.create!(name: "gone")
        CtCommitJob.perform_later("rolled back")
        raise ActiveRecord::Rollback
      end
      job = nil
      ActiveRecord::Base.transaction do
        Account.create!(name: "kept")
        job = CtCommitJob.perform_later("committed")
        ActiveJob.perform_all_later([CtCommitJob.new("bulk committed")]) if #{version >= Gem::Version.new("8.1")}
        puts "inside: \#{queued.call.size}"
      end
      puts "after: \#{queued.call.size} \#{job.provider_job_id.to_s.size}"
    RUBY
    expect(out).to include(version >= Gem::Version.new("8.0") ? "setting: true" : "setting: :default")
    committed = version >= Gem::Version.new("8.1") ? 2 : 1
    expect(out).to include("inside: 0", "after: #{committed} 24")

    pid = worker("-r", root)
    wait_for(message: "the committed job (worker log: #{File.join(dir, "worker.log")})", timeout: 20) { records.size >= committed }
    sleep 0.5
    expect(notes.map(&:last).sort).to eq(["bulk committed", "committed"].last(committed))
    stop(pid)
  end

  it "stops a Continuable job at its next step on TERM and resumes it in the next worker, no step done twice" do
    skip "ActiveJob #{version} has no Continuations (Rails 8.1+)" unless version >= Gem::Version.new("8.1")

    root = rails_app
    in_app(root, "CtStepJob.perform_later(150)")
    first = worker("-r", root, log: File.join(dir, "first.log"))
    wait_for(message: "the first items", timeout: 20) { records.size >= 20 }
    stop(first)
    interrupted = notes.size
    expect(interrupted).to be < 150
    wait_for(message: "the job enqueued again to resume") { FiberJob::Queue.scheduled_jobs.size + FiberJob::Queue.jobs("default").size == 1 }

    second = worker("-r", root, log: File.join(dir, "second.log"))
    wait_for(message: "the job finished", timeout: 30) { notes.any? { |n| n[0] == "finish" } }
    sleep 0.5
    items = notes.select { |n| n[0] == "item" }
    expect(items.map { |n| n[1] }).to eq((0...150).to_a) # each item once, in order
    expect(items.map(&:last).uniq).to eq([first, second])
    expect(notes.count { |n| n[0] == "finish" }).to eq(1)
    expect(notes.last).to eq(["finish", second, 1])
    puts "    TERM after #{interrupted} of 150 items; resumed at item #{interrupted} in the next worker"
    stop(second)
  end
end
