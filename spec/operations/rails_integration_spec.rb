# frozen_string_literal: true

require "open3"

# Rails' own ActiveJob adapter integration test, activejob/test/integration/queuing_test.rb
# (the test Rails held every queue adapter to), run against FiberJob: the test of the
# Rails source tree FIBER_JOB_RAILS_SRC names (7.2, 8.0, 8.1), as Rails' Rakefile runs
# `test:integration:<adapter>` (AJ_ADAPTER, AJ_INTEGRATION_TESTS=1, `ruby -Itest ...`),
# with FiberJob's jobs manager (spec/support/rails_integration/fiber_job.rb) beside
# Rails' Sidekiq one, a real `fiber_job` worker process and the suite's Redis.
#
# For an adapter Rails does not name, the test has 7 tests: jobs on a listening queue
# run, jobs on another queue do not, a job 10 minutes ahead does not run, jobs 5 s
# ahead (one by one and through perform_all_later) run in time, and the locale and the
# time zone of the enqueue reach the job. The provider_job_id tests (async, delayed_job,
# sidekiq, queue_classic) and "should interrupt jobs" (Continuations; sidekiq) do not run.
#
# Rails' files run as they are; nothing in them is patched. What the copy needs around them:
# - tools/ beside activejob/: test/helper.rb requires ../../tools/strict_warnings.
# - A Gemfile, through BUNDLE_GEMFILE and RUBYOPT=-rbundler/setup (what `bundle exec`
#   with Rails' own Gemfile is on Rails' CI). The dummy app that Rails' helper generates
#   boots through `require "bundler/setup"` and `require "bootsnap/setup"`, requires
#   "rails/all", calls `Bundler.require`, and its config/initializers/assets.rb sets
#   config.assets (propshaft). The Gemfile has rails from the source tree (each framework
#   through its gemspec), sqlite3, propshaft, bootsnap and FiberJob from this checkout;
#   all their dependencies must be installed, beyond the usual ones nokogiri,
#   rails-html-sanitizer, rails-dom-testing, mail, marcel, websocket-driver, msgpack,
#   irb and, for 8.1, action_text-trix. When Bundler cannot resolve them, the example is
#   skipped with Bundler's message.
# - Rails 7.2: minitest < 6 (its railties' line filtering overrides Minitest::Runnable.run
#   with minitest 5's arity; Rails' 7.2 lockfile has minitest 5.25).
# - TMPDIR inside the run's directory: the helper generates the dummy app in a
#   Dir.mktmpdir that it never removes.
RSpec.describe "Rails' ActiveJob integration test (queuing_test.rb)", :slow do
  RAILS_INTEGRATION_LIMIT = 300 # seconds; the run takes about 20

  let(:src) { ENV.fetch("FIBER_JOB_RAILS_SRC", "").then { |s| s.empty? ? s : File.expand_path(s) } }
  let(:dir) { Dir.mktmpdir("fiber_job-rails-integration") }
  let(:version) { Gem::Version.new(File.read(File.join(src, "RAILS_VERSION")).strip) }

  after { FileUtils.rm_rf(dir) unless ENV["KEEP"] }

  def root = File.expand_path("..", SpecHelpers::LIB)

  # A copy of activejob/test (with FiberJob's jobs manager) and tools/, as in the tree.
  def copy_tests
    FileUtils.mkdir_p([File.join(dir, "activejob"), File.join(dir, "tmp")])
    FileUtils.cp_r(File.join(src, "activejob", "test"), File.join(dir, "activejob"))
    FileUtils.cp_r(File.join(src, "tools"), dir)
    FileUtils.cp(File.join(root, "spec", "support", "rails_integration", "fiber_job.rb"),
                 File.join(dir, "activejob", "test", "support", "integration", "adapters", "fiber_job.rb"))
  end

  # FIBER_JOB_ASYNC_VERSION's pin (spec/support/gem_versions.rb) goes in as well: this
  # RUBYOPT replaces the one that carries it.
  def write_gemfile
    async = ENV.fetch("FIBER_JOB_ASYNC_VERSION", "")
    File.write(File.join(dir, "Gemfile"), <<~RUBY)
      # Written by spec/operations/rails_integration_spec.rb for one run.
      gem "rails", path: #{src.dump}
      gem "sqlite3"
      gem "propshaft"
      gem "bootsnap", require: false
      gem "fiber_job", path: #{root.dump}
      #{'gem "minitest", "< 6"' if version < Gem::Version.new("8.0")}
      #{"gem \"async\", #{async.dump}" unless async.empty?}
    RUBY
  end

  def env
    { "AJ_ADAPTER" => "fiber_job", "AJ_INTEGRATION_TESTS" => "1", "REDIS_URL" => FiberJob.config.redis_url,
      "RUBYLIB" => [SpecHelpers::LIB, ENV.fetch("RUBYLIB", nil)].compact.join(File::PATH_SEPARATOR),
      "BUNDLE_GEMFILE" => File.join(dir, "Gemfile"), "RUBYOPT" => "-rbundler/setup", "TMPDIR" => File.join(dir, "tmp") }
  end

  # Whether the process group `pgid` still has a process (the test or its worker).
  def group_alive?(pgid)
    Process.kill(0, -pgid)
    true
  rescue Errno::ESRCH
    false
  end

  it "passes with FiberJob as the adapter and a fiber_job worker process" do
    skip "set FIBER_JOB_RAILS_SRC to a Rails source tree (7.2+) to run its ActiveJob integration test" if src.empty?
    skip "runs against one Redis, not the cluster pass" if TEST_CLUSTER
    ruby = Gem::Specification.load(File.join(src, "rails.gemspec")).required_ruby_version
    skip "Rails #{version} needs Ruby #{ruby}" unless ruby.satisfied_by?(Gem::Version.new(RUBY_VERSION))

    copy_tests
    write_gemfile
    out, status = Open3.capture2e(env, RbConfig.ruby, "-e", "", chdir: dir)
    missing = out[/(Could not find|Unable to satisfy) [^\n]*/] unless status.success?
    skip "the gems of the run are not all installed: #{missing}" if missing
    expect(status).to be_success, out

    rails_libs = RailsSource::FRAMEWORKS.map { |f| "-I#{File.join(src, f, "lib")}" }
    log = File.join(dir, "queuing_test.log")
    pid = Process.spawn(env, RbConfig.ruby, "-Itest", *rails_libs, "test/integration/queuing_test.rb", "-v",
                        chdir: File.join(dir, "activejob"), in: File::NULL, out: log, err: %i[child out], pgroup: true)
    begin
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + RAILS_INTEGRATION_LIMIT
      until (status = Process.wait2(pid, Process::WNOHANG)&.last)
        over = Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        raise "queuing_test.rb took over #{RAILS_INTEGRATION_LIMIT}s:\n#{File.read(log)}" if over

        sleep 0.2
      end
      expect(group_alive?(pid)).to be(false), "a process of the run (the worker?) is still running"
    ensure
      begin
        Process.kill("KILL", -pid)
        Process.wait(pid)
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      end
    end

    out = File.read(log)
    summary = out[/^\d+ runs, \d+ assertions, \d+ failures, \d+ errors, \d+ skips$/]
    expect(summary).not_to be_nil, out
    puts "    Rails #{version} queuing_test.rb on Ruby #{RUBY_VERSION}: #{summary}"
    runs, _assertions, failures, errors = summary.scan(/\d+/).map(&:to_i)
    expect([failures, errors]).to eq([0, 0]), out
    expect(runs).to be_positive
    expect(status).to be_success, out
    expect(out).to include("Using fiber_job")

    # The jobs ran in the worker the jobs manager started, and it stopped on TERM.
    worker_log = Dir[File.join(dir, "tmp", "*", "dummy", "log", "fiber_job.log")]
    expect(worker_log.size).to eq(1)
    expect(File.read(worker_log.first)).to include("started: queues integration_tests=1 ")
      .and include("done:").and include("stopped")
  end
end
