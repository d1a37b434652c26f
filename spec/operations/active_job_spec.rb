# frozen_string_literal: true

require "open3"

# ActiveJob (Debian's 6.1) on FiberJob, through real `fiber_job` worker processes.
RSpec.describe "the ActiveJob adapter" do
  let(:dir) { Dir.mktmpdir("fiber_job-aj") }
  let(:app) { File.join(dir, "app.rb") }

  before do
    File.write(app, <<~RUBY)
      require "fiber_job/active_job"
      ActiveJob::Base.queue_adapter = :fiber_job
      ActiveJob::Base.logger = Logger.new(nil)

      module AjNote
        def self.add(*parts) = FiberJob.const_get(:Internal).enqueue._push("record", [JSON.generate(parts)])
      end

      class AjFlaky < StandardError; end

      class AjMailJob < ActiveJob::Base
        queue_as :mailers
        def perform(to, subject)
          AjNote.add("mail", to, subject, job_id, provider_job_id, queue_name)
        end
      end

      class AjFlakyJob < ActiveJob::Base
        retry_on AjFlaky, wait: 0, attempts: 3
        def perform(fail_times)
          AjNote.add("flaky", executions)
          raise AjFlaky, "attempt \#{executions}" if executions <= fail_times
        end
      end

      class AjAccountJob < ActiveJob::Base
        fiber_job_options limits_concurrency: { to: 1, key: ->(account, *) { account } },
                          unique_for: 60, unique_by: ->(account, n) { [account, n] }, expires_in: 600
        def perform(account, n)
          AjNote.add("start", account, n, Time.now.to_f)
          sleep 0.3
          AjNote.add("finish", account, n, Time.now.to_f)
        end
      end

      class AjBrokenJob < ActiveJob::Base
        def perform
          AjNote.add("broken", executions)
          raise ArgumentError, "always broken"
        end
      end
    RUBY
    # This process enqueues with the same definitions the workers run.
    load app unless defined?(AjMailJob)
  end

  after { FileUtils.rm_rf(dir) }

  def notes
    records.map { |r| JSON.parse(r) }
  end

  def start_worker(queues)
    log = File.join(dir, "worker.log")
    spawn_fiber_job("-r", app, "-q", queues, log: log)
  end

  it "enqueues on the job's queue, runs it in a worker, and maps ids both ways" do
    job = AjMailJob.perform_later("ann@example.com", "Welcome")
    expect(job.provider_job_id).to match(/\A\h{24}\z/)
    stored = FiberJob::Queue.jobs(:mailers).first
    expect(stored).to include("class" => "FiberJob::ActiveJob::Wrapper", "jid" => job.provider_job_id,
                              "wrapped" => "AjMailJob", "wrapped_job_id" => job.job_id, "queue" => "mailers")
    expect(FiberJob::Queue.find_job(job.provider_job_id)[:job]["args"].first["job_id"]).to eq(job.job_id)

    pid = start_worker("mailers")
    wait_for(message: "mail job") { notes.any? }
    expect(notes).to eq([["mail", "ann@example.com", "Welcome", job.job_id, job.provider_job_id, "mailers"]])
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
  end

  it "joins perform_later and set(wait:).perform_later made inside a batch's jobs block to the batch" do
    batch = FiberJob::Batch.new(description: "mails")
    batch.jobs do
      AjMailJob.perform_later("dee@example.com", "In a batch")
      AjMailJob.set(wait: 0.3).perform_later("eve@example.com", "Later in a batch")
    end
    expect(FiberJob::Batch.status(batch.bid)).to include(total: 2, pending: 2)
    pid = start_worker("mailers")
    wait_for(message: "the batch to succeed") { FiberJob::Batch.status(batch.bid)[:success] }
    expect(notes.map { |n| n[1] }.sort).to eq(["dee@example.com", "eve@example.com"])
    Process.kill("TERM", pid)
    wait_process(pid)
  end

  it "enqueue_at schedules in FiberJob's scheduled set; priorities are kept on the payload" do
    job = AjMailJob.set(wait: 60, priority: 5).perform_later("bob@example.com", "Later")
    scheduled = FiberJob::Queue.scheduled_jobs.first
    expect(scheduled).to include("jid" => job.provider_job_id, "priority" => 5, "queue" => "mailers")
    expect(scheduled["at"]).to be_within(5).of(Time.now.to_f + 60)

    soon = AjMailJob.set(wait: 0.5).perform_later("cy@example.com", "Soon")
    pid = start_worker("mailers")
    wait_for(message: "scheduled job") { notes.any? }
    expect(notes.map { |n| n[1] }).to eq(["cy@example.com"])
    expect(notes.first[3]).to eq(soon.job_id)
    Process.kill("TERM", pid)
    wait_process(pid)
  end

  it "leaves retries to ActiveJob's retry_on, never doubling them, and sends exhausted jobs to the dead set" do
    AjFlakyJob.perform_later(2)   # fails twice, succeeds on the third execution
    AjFlakyJob.perform_later(5)   # fails three times: retry_on gives up after 3 attempts
    AjBrokenJob.perform_later     # no retry_on: one execution, then dead
    pid = start_worker("default")
    wait_for(message: "two dead jobs", timeout: 20) { FiberJob::Queue.dead_jobs.size == 2 }
    sleep 0.5
    executions = notes.group_by(&:first).transform_values { |v| v.map(&:last) }
    expect(executions["flaky"].sort).to eq([1, 1, 2, 2, 3, 3])
    expect(executions["broken"]).to eq([1])
    dead = FiberJob::Queue.dead_jobs.map { |d| [d["wrapped"], d["error_class"]] }
    expect(dead).to contain_exactly(%w[AjFlakyJob AjFlaky], %w[AjBrokenJob ArgumentError])
    expect(FiberJob::Queue.retries).to be_empty # FiberJob itself scheduled no retry
    Process.kill("TERM", pid)
    wait_process(pid)
  end

  it "applies fiber_job_options: unique jobs, a concurrency limit per key and expiry, on ActiveJob classes" do
    first = AjAccountJob.perform_later(1, 1)
    expect(first.provider_job_id).to match(/\A\h{24}\z/)
    expect(AjAccountJob.perform_later(1, 1).provider_job_id).to be_nil # a duplicate
    [2, 3].each { |n| AjAccountJob.perform_later(1, n) }
    AjAccountJob.perform_later(2, 1) # another account: not held back
    stored = FiberJob::Queue.find_job(first.provider_job_id)[:job]
    expect(stored).to include("concurrency" => { "key" => "AjAccountJob/1", "to" => 1, "lease" => 600.0 }, "unique_for" => 60.0)
    expect(stored["expires_at"]).to be_within(5).of(Time.now.to_f + 600)
    pid = start_worker("default")
    wait_for(message: "4 jobs", timeout: 20) { notes.count { |n| n[0] == "finish" } == 4 }
    runs = notes.group_by { |n| n[1..2] }.transform_values { |ns| ns.map(&:last) } # [account, n] => [start, finish]
    account1 = runs.select { |(account, _), _| account == 1 }.values.sort
    expect(account1.size).to eq(3)
    account1.each_cons(2) { |(_, finish), (start, _)| expect(start).to be >= finish } # one at a time
    expect(runs[[2, 1]].first).to be < account1.last.first # account 2 did not wait for account 1
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
  end

  it "is selected by a Rails app's config, which also reads config/fiber_job.yml" do
    if Gem.find_files("rails.rb").empty?
      skip "Rails (railties) is not installed for Ruby #{RUBY_VERSION}: install railties, " \
           "or set FIBER_JOB_RAILS_SRC to a Rails source tree"
    end
    root = File.join(dir, "rails_app")
    FileUtils.mkdir_p(File.join(root, "config"))
    File.write(File.join(root, "config", "fiber_job.yml"), <<~YAML)
      concurrency: 3
      test:
        queues: [mailers, default]
        shutdown_timeout: 7
    YAML
    File.write(File.join(root, "config", "environment.rb"), <<~RUBY)
      require "rails"
      require "active_job/railtie"
      require "fiber_job"
      class DemoApp < Rails::Application
        config.root = #{root.dump}
        config.eager_load = false
        config.logger = Logger.new(nil)
        config.active_job.queue_adapter = :fiber_job
      end
      Rails.application.initialize!
    RUBY
    script = <<~RUBY
      require #{File.join(root, "config", "environment.rb").dump}
      c = FiberJob.config
      puts [ActiveJob::Base.queue_adapter.class.name, c.concurrency, c.queues.join(","), c.shutdown_timeout].join(" ")
    RUBY
    out, err, status = Open3.capture3({ "RAILS_ENV" => "test", "REDIS_URL" => FiberJob.config.redis_url },
                                      RbConfig.ruby, "-I", SpecHelpers::LIB, "-e", script)
    expect(status.exitstatus).to eq(0), err
    expect(out.strip).to eq("ActiveJob::QueueAdapters::FiberJobAdapter 3 mailers,default 7")
  end
end
