# frozen_string_literal: true

# Enqueue after commit, against ActiveRecord 6.1 on SQLite in a real process: jobs
# enqueued inside a transaction reach Redis at its commit, never on rollback.
RSpec.describe "enqueue after commit (ActiveRecord)" do
  # Runs `body` in a process with ActiveRecord on a fresh SQLite file and two job
  # classes; returns what it printed.
  def in_app(body, setting: "c.enqueue_after_commit = true")
    dir = Dir.mktmpdir("fiber_job-ar")
    pid, out = spawn_ruby(<<~RUBY)
      require "active_record"
      #{setting.empty? ? "" : "FiberJob.configure { |c| #{setting} }"}
      ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: #{File.join(dir, "app.db").dump})
      ActiveRecord::Base.connection.create_table(:accounts) { |t| t.string :name }
      class Account < ActiveRecord::Base; end
      class WelcomeJob < FiberJob::Job
        def perform(name) = nil
      end
      class AuditJob < FiberJob::Job
        enqueue_after_commit false
        def perform(name) = nil
      end
      def queued = FiberJob::Queue.jobs("default").map { |j| [j["class"], j["args"].first] }.sort
      #{body}
    RUBY
    expect(wait_process(pid).exitstatus).to eq(0), File.read(out)
    File.read(out)
  ensure
    FileUtils.rm_rf(dir)
  end

  it "enqueues at commit, once, and returns the jid at once" do
    out = in_app(<<~RUBY)
      jid = nil
      ActiveRecord::Base.transaction do
        Account.create!(name: "ann")
        jid = WelcomeJob.perform_async("ann")
        WelcomeJob.perform_bulk([["bulk1"], ["bulk2"]])
        WelcomeJob.perform_in(60, "later")
        AuditJob.perform_async("audit now")   # its class opts out
        puts "inside: \#{queued.inspect}"
      end
      puts "after: \#{queued.inspect}"
      puts "jid: \#{FiberJob::Queue.find_job(jid)&.dig(:job, "jid") == jid}"
      puts "scheduled: \#{FiberJob::Queue.scheduled_jobs.map { |j| j["args"].first }.inspect}"
      WelcomeJob.perform_async("outside")
      puts "outside: \#{queued.size}"
    RUBY
    expect(out).to include(%(inside: [["AuditJob", "audit now"]]))
    expect(out).to include(%(after: [["AuditJob", "audit now"], ["WelcomeJob", "ann"], ["WelcomeJob", "bulk1"], ["WelcomeJob", "bulk2"]]))
    expect(out).to include("jid: true", %(scheduled: ["later"]), "outside: 5")
  end

  it "drops the jobs of a rolled-back transaction, of an exception in the block, and of a rolled-back savepoint" do
    out = in_app(<<~RUBY)
      ActiveRecord::Base.transaction do
        WelcomeJob.perform_async("rolled back")
        raise ActiveRecord::Rollback
      end
      begin
        ActiveRecord::Base.transaction do
          WelcomeJob.perform_async("raised")
          raise ArgumentError, "boom"
        end
      rescue ArgumentError => e
        puts "raised: \#{e.message}"
      end
      ActiveRecord::Base.transaction do
        WelcomeJob.perform_async("outer")
        ActiveRecord::Base.transaction(requires_new: true) do
          WelcomeJob.perform_async("inner, rolled back")
          raise ActiveRecord::Rollback
        end
        ActiveRecord::Base.transaction(requires_new: true) do
          WelcomeJob.perform_async("inner, kept")
        end
        ActiveRecord::Base.transaction { WelcomeJob.perform_async("joined") }
        puts "before commit: \#{queued.size}"
      end
      puts "queued: \#{queued.map(&:last).inspect}"
    RUBY
    expect(out).to include("raised: boom", "before commit: 0")
    expect(out).to include(%(queued: ["inner, kept", "joined", "outer"]))
  end

  it "enqueues at once without the setting, and per class with it off globally" do
    out = in_app(<<~RUBY, setting: "")
      class LaterJob < FiberJob::Job
        enqueue_after_commit true
        def perform = nil
      end
      ActiveRecord::Base.transaction do
        WelcomeJob.perform_async("now")
        LaterJob.perform_async
        puts "inside: \#{queued.inspect}"
      end
      puts "after: \#{queued.inspect}"
    RUBY
    expect(out).to include(%(inside: [["WelcomeJob", "now"]]), %(after: [["LaterJob", nil], ["WelcomeJob", "now"]]))
  end
end
