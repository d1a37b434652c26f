# frozen_string_literal: true

require "stringio"

class ObservedJob < FiberJob::Job
  def perform(mode)
    FiberJob.logger.info("inside the job")
    raise KeyError, "observed failure" if mode == "fail"
  end
end

class ObservedOnceJob < ObservedJob
  def initialize
    super
    @max_retries = 0
  end
end

RSpec.describe "logging, instrumentation and metrics" do
  let(:io) { StringIO.new }

  def use_log(format, level: :info)
    FiberJob.logger = nil
    FiberJob.configure do |c|
      c.log_format = format
      c.log_level = level
    end
    FiberJob.logger.reopen(io) # the default logger, writing to `io`
    io
  end

  def lines
    io.string.lines.map(&:chomp)
  end

  # ActiveSupport is Debian's on Ruby 3.1; a Ruby built elsewhere may have none.
  def require_notifications
    require "active_support/notifications"
  rescue LoadError => e
    skip "ActiveSupport is not installed for Ruby #{RUBY_VERSION} (#{e.message}): install activesupport, " \
         "or set FIBER_JOB_RAILS_SRC to a Rails source tree"
  end

  it "logs start, done and fail per job with class, jid, queue and duration, plus the job's own lines" do
    use_log(:text)
    ok = ObservedJob.perform_async("ok")
    bad = ObservedOnceJob.perform_async("fail")
    with_worker { wait_for(message: "two outcomes") { io.string.include?("fail:") && io.string.include?("done:") } }
    expect(lines).to include(a_string_matching(/pid=\d+ tid=\w+ class=ObservedJob jid=#{ok} queue=default INFO: start\z/))
    expect(lines).to include(a_string_matching(/class=ObservedJob jid=#{ok} queue=default INFO: inside the job\z/))
    expect(lines).to include(a_string_matching(/class=ObservedJob jid=#{ok} queue=default elapsed=[\d.]+ INFO: done: [\d.]+ sec\z/))
    expect(lines).to include(a_string_matching(/class=ObservedOnceJob jid=#{bad} .* WARN: fail: [\d.]+ sec: KeyError: observed failure \(no retries left/))
    expect(lines).to include(a_string_matching(/INFO: FiberJob .* started: queues default=2/))
  end

  it "logs one JSON object per line with the job context when log_format is :json" do
    use_log(:json)
    jid = ObservedJob.perform_async("ok")
    with_worker { wait_for(message: "done line") { io.string.include?("done:") } }
    records = lines.map { |l| JSON.parse(l) }
    done = records.find { |r| r["msg"].start_with?("done:") }
    expect(done).to include("lvl" => "INFO", "pid" => Process.pid)
    expect(done["ctx"]).to include("class" => "ObservedJob", "jid" => jid, "queue" => "default")
    expect(done["ctx"]["elapsed"]).to be_a(Float)
    expect(records.map { |r| r["ts"] }).to all(match(/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/))
  end

  it "job_log_level false logs no per-job lines; a user's logger gets the lines with the job named" do
    use_log(:text)
    FiberJob.config.job_log_level = false
    ObservedJob.perform_async("ok")
    with_worker { wait_for(message: "job ran") { FiberJob::Queue.metrics["default"][:processed] == 1 } }
    expect(io.string).not_to include("INFO: start")
    expect(io.string).not_to include("done:")

    FiberJob.config.job_log_level = :info
    mine = StringIO.new
    FiberJob.logger = Logger.new(mine)
    jid = ObservedJob.perform_async("ok")
    with_worker { wait_for(message: "done line") { mine.string.include?("done:") } }
    expect(mine.string).to match(/ObservedJob jid=#{jid} done: [\d.]+ sec/)
  end

  it "emits enqueue, perform, retry and dead events with durations; a raising subscriber is harmless" do
    events = Queue.new
    FiberJob.on(:enqueue) { |e| events << e }
    FiberJob.on(:perform) { |e| events << e }
    FiberJob.on(:retry) { |e| events << e }
    FiberJob.on(:dead) { |e| events << e }
    FiberJob.on(:perform) { raise "subscriber bug" }
    ok = ObservedJob.perform_async("ok")
    retried = ObservedJob.perform_async("fail")
    dead = ObservedOnceJob.perform_async("fail")
    with_worker { wait_for(message: "events") { events.size >= 8 } }
    all = Array.new(events.size) { events.pop }
    by = ->(name, jid) { all.find { |e| e.name == name && e.jid == jid } }

    expect(by[:enqueue, ok]).to have_attributes(job_class: ObservedJob, queue: "default", args: ["ok"])
    expect(by[:enqueue, ok].duration).to be > 0
    expect(by[:perform, ok]).to have_attributes(job_class: ObservedJob, error: nil)
    expect(by[:perform, ok].duration).to be >= 0
    expect(by[:perform, retried].error).to be_a(KeyError)
    expect(by[:retry, retried].retry_at).to be > Time.now.to_f
    expect(by[:dead, dead].error.message).to eq("observed failure")
    expect(by[:dead, retried]).to be_nil
    expect { FiberJob.on(:nope) {} }.to raise_error(ArgumentError, /one of :enqueue, :perform, :retry, :dead/)
  end

  it "publishes to ActiveSupport::Notifications when it is loaded" do
    require_notifications
    seen = []
    sub = ActiveSupport::Notifications.subscribe("perform.fiber_job") do |name, start, finish, _id, payload|
      seen << [name, finish - start, payload]
    end
    jid = ObservedJob.perform_async("ok")
    with_worker { wait_for(message: "notification") { seen.any? } }
    name, elapsed, payload = seen.first
    expect(name).to eq("perform.fiber_job")
    expect(elapsed).to be >= 0
    expect(payload).to include(jid: jid, job_class: ObservedJob, queue: "default")
  ensure
    ActiveSupport::Notifications.unsubscribe(sub) if sub
  end

  it "gives a running worker's events to a FiberJob.on subscriber at once, an ActiveSupport one within a second" do
    require_notifications
    ours = []
    theirs = []
    sub = block = nil
    with_worker do
      first = ObservedJob.perform_async("ok") # the worker asks ActiveSupport: nobody listens
      wait_for(message: "the first job") { FiberJob::Queue.metrics.dig("default", :processed).to_i >= 1 }
      block = FiberJob.on(:perform) { |e| ours << e.jid }
      sub = ActiveSupport::Notifications.subscribe("perform.fiber_job") { |*, payload| theirs << payload[:jid] }
      second = ObservedJob.perform_async("ok")
      wait_for(message: "the FiberJob.on event") { ours.include?(second) }
      sleep 1.1 # the jobs that start a second after it subscribed reach ActiveSupport's subscriber
      third = ObservedJob.perform_async("ok")
      wait_for(message: "the ActiveSupport event") { theirs.include?(third) }
      expect(theirs).not_to include(first)
      expect(ours).to eq([second, third])
    end
  ensure
    FiberJob.off(:perform, block) if block
    ActiveSupport::Notifications.unsubscribe(sub) if sub
  end

  it "keeps processed and failed counters per queue in Redis, read by Queue.metrics" do
    3.times { ObservedJob.perform_async("ok") }
    ObservedOnceJob.perform_async("fail")
    FiberJob.const_get(:Internal)::Enqueue.push(ObservedJob, ["ok"], queue: "other")
    with_worker(queues: %i[default other]) do
      wait_for(message: "all five") { FiberJob::Queue.metrics.values.sum { |m| m[:processed] + m[:failed] } == 5 }
    end
    metrics = FiberJob::Queue.metrics
    expect(metrics["default"]).to include(processed: 3, failed: 1, size: 0, processing: 0)
    expect(metrics["other"]).to include(processed: 1, failed: 0)
    expect(FiberJob::Queue.totals).to include(processed: 4, failed: 1, dead: 1)

    ObservedJob.perform_async("waiting")
    sleep 0.05
    expect(FiberJob::Queue.metrics(["default"])["default"][:latency]).to be >= 0.05
  end
end
