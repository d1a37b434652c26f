# frozen_string_literal: true

# FiberJob's jobs manager for Rails' own ActiveJob adapter integration test
# (activejob/test/integration/queuing_test.rb), the counterpart of the one Rails has
# for Sidekiq (activejob/test/support/integration/adapters/sidekiq.rb). Rails'
# JobsManager requires `adapters/#{ENV["AJ_ADAPTER"]}.rb` and extends itself with
# `FiberJobJobsManager`, so spec/operations/rails_integration_spec.rb copies this file
# into its copy of Rails' test tree as adapters/fiber_job.rb and runs the test with
# AJ_ADAPTER=fiber_job.
#
# The test process enqueues through the adapter; a real `fiber_job` worker process,
# started here on the dummy app Rails' helper generated, works the queue
# integration_tests. Both reach Redis through REDIS_URL.
require "fiber_job"
require "fiber_job/active_job"
require "rbconfig"
require "timeout"

module FiberJobJobsManager
  QUEUE = "integration_tests"
  # Seconds the worker may take to load the dummy app and register, and to stop.
  START_TIMEOUT = 60
  STOP_TIMEOUT = 30

  # Runs in the dummy app's initializer (dummy_app_template.rb): the adapter for every
  # job, and an early exit, as Rails' Sidekiq manager does, when Redis is not there.
  def setup
    ActiveJob::Base.queue_adapter = :fiber_job
    return if can_run?

    puts "Cannot run integration tests for FiberJob: no Redis at #{FiberJob.config.redis_url} (set REDIS_URL)."
    exit(!ENV["BUILDKITE"])
  end

  # What Rails' Sidekiq manager clears: the test queue and every scheduled job (a
  # round that deletes none of those it listed, because they were just promoted, ends it).
  def clear_jobs
    FiberJob::Queue.clear(QUEUE)
    loop do
      deleted = FiberJob::Queue.scheduled_jobs(limit: 100).count do |job|
        FiberJob::Queue.delete_waiting(:scheduled, job["queue"], job["jid"])
      end
      break if deleted.zero?
    end
  end

  # Starts `fiber_job -r <dummy app> -q integration_tests -c 1` as a process of its own
  # (its output in the app's log/fiber_job.log) and returns once its heartbeat is in
  # Redis, i.e. it loaded the app and fetches; fails with the log's end if it exits
  # or does not register in time. The worker stays in this process's group, so
  # whoever runs the test can end both at once.
  def start_workers
    @log = Rails.root.join("log", "fiber_job.log").to_s
    @pid = Process.spawn({ "REDIS_URL" => FiberJob.config.redis_url, "RAILS_ENV" => "test" },
                         RbConfig.ruby, fiber_job_command, "-r", Rails.root.to_s, "-q", QUEUE, "-c", "1",
                         in: File::NULL, out: [@log, "a"], err: %i[child out])
    wait_until_registered
  end

  # TERM, as a deploy would send: the worker finishes or puts back what it runs and exits.
  def stop_workers
    return unless @pid

    Process.kill("TERM", @pid)
    begin
      Timeout.timeout(STOP_TIMEOUT) { Process.wait(@pid) }
    rescue Timeout::Error
      Process.kill("KILL", @pid)
      Process.wait(@pid)
      raise "fiber_job worker #{@pid} did not stop within #{STOP_TIMEOUT}s of TERM (log: #{@log})"
    end
  ensure
    @pid = nil
  end

  def can_run?
    FiberJob::Queue.names
    true
  rescue FiberJob::Error
    false
  end

  private

  # The `fiber_job` command of the FiberJob that this process loaded (exe/ beside its
  # lib/, in a checkout or an installed gem), so that the worker runs the same code.
  def fiber_job_command
    lib = $LOADED_FEATURES.find { |f| f.end_with?("/fiber_job.rb") && File.file?(f) }
    exe = File.expand_path("../exe/fiber_job", File.dirname(lib))
    File.file?(exe) ? exe : Gem.bin_path("fiber_job", "fiber_job")
  end

  # Registered: a heartbeat of this pid that lists the queue (Queue.processes).
  def wait_until_registered
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + START_TIMEOUT
    until FiberJob::Queue.processes.any? { |p| p[:pid] == @pid && p[:queues].include?(QUEUE) }
      if (status = Process.wait2(@pid, Process::WNOHANG)&.last)
        @pid = nil
        raise "fiber_job worker exited at start (#{status.inspect})\n#{log_tail}"
      end
      if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        stop_workers
        raise "fiber_job worker did not register within #{START_TIMEOUT}s\n#{log_tail}"
      end
      sleep 0.1
    end
  end

  def log_tail
    File.exist?(@log) ? File.readlines(@log).last(20).join : "(no log at #{@log})"
  end
end
