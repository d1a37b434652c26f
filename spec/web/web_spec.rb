# frozen_string_literal: true

require "rack/test"
require "fiber_job/web"
require_relative "prometheus_format"

XSS = "<script>alert('x')</script>"

class WebOkJob < FiberJob::Job
  def perform(*_args); end
end

class WebSlowJob < FiberJob::Job
  def perform(seconds, _label = nil)
    sleep seconds
  end
end

class WebFailJob < FiberJob::Job
  def initialize
    super
    @max_retries = 5
  end

  def retry_delay(_attempt) = 3600

  def perform(*args)
    raise ArgumentError, "failed with #{args.inspect}"
  end
end

class WebDeadJob < WebFailJob
  def initialize
    super
    @max_retries = 0
  end
end

class WebCronJob < FiberJob::CronJob
  cron "0 4 * * *"
  def execute_cron_job; end
end

RSpec.describe FiberJob::Web do
  include Rack::Test::Methods

  def app = described_class

  after { described_class.reset! }

  # Puts real jobs in every state through a real worker: enqueued, scheduled, retry,
  # dead, failed records; `busy` is left to the example that needs it.
  def populate
    @retry_jid = WebFailJob.perform_async(XSS)
    @dead_jid = WebDeadJob.perform_async(XSS)
    with_worker do
      wait_for(message: "retry and dead") { FiberJob::Queue.totals.values_at(:retries, :dead) == [1, 1] }
    end
    @queued_jid = WebOkJob.perform_async(XSS, 1)
    @other_jid = WebOkJob.perform_async("second")
    @scheduled_jid = WebOkJob.perform_in(3600, XSS)
    FiberJob.register_cron_jobs
  end

  # The token every page carries (and the cookie it must match, kept by rack-test).
  def csrf
    get "/"
    last_response.body[/<meta name="csrf-token" content="(\h{64})">/, 1] || raise("no CSRF token on /")
  end

  it "serves every page with the jobs in it, escaped, and a job page by jid" do
    populate
    pages = {
      "/" => ["Processed", "Redis", "7.0"],
      "/queues" => ["default"],
      "/queues/default" => [@queued_jid, "WebOkJob"],
      "/scheduled" => [@scheduled_jid, "WebOkJob"],
      "/retries" => [@retry_jid, "ArgumentError"],
      "/dead" => [@dead_jid, "ArgumentError", "Retry all"],
      "/failed" => [@retry_jid, @dead_jid],
      "/cron" => ["WebCronJob", "0 4 * * *"],
      "/busy" => ["Processes"],
      "/jobs/#{@scheduled_jid}" => ["scheduled", @scheduled_jid],
      "/jobs/#{@dead_jid}" => ["dead", "ArgumentError"]
    }
    pages.each do |path, texts|
      get path
      expect(last_response.status).to eq(200), "#{path}: #{last_response.status}"
      expect(last_response.content_type).to start_with("text/html")
      texts.each { |t| expect(last_response.body).to include(t), "#{path} lacks #{t}" }
      expect(last_response.body).not_to include("<script>alert"), "#{path} shows unescaped HTML"
    end
    %w[/queues/default /scheduled /retries /dead /failed].each do |path|
      get path
      expect(last_response.body).to include("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), path
    end
    get "/jobs/#{"f" * 24}"
    expect(last_response.status).to eq(404)
    get "/nothing/here"
    expect(last_response.status).to eq(404)
    get "/assets/app.css"
    expect([last_response.status, last_response.content_type]).to eq([200, "text/css"])
  end

  it "serves the dashboard's numbers and 5 minutes of throughput windows as JSON" do
    populate
    get "/stats.json"
    expect(last_response.content_type).to eq("application/json")
    stats = JSON.parse(last_response.body)
    expect(stats).to include("dead" => 1, "retries" => 1, "scheduled" => 1, "enqueued" => 2, "failed" => 2)
    expect(stats["throughput"].size).to eq(30)
    expect(stats["throughput"].map { |w| w["at"] }.each_cons(2).all? { |a, b| b - a == 10 }).to be(true)
    expect(stats["throughput"].sum { |w| w["failed"] }).to be > 0
  end

  it "shows live processes and the jobs they run on the busy page" do
    jid = WebSlowJob.perform_async(3, XSS)
    with_worker do
      wait_for(message: "busy") { FiberJob::Queue.totals[:processing] == 1 && FiberJob::Queue.processes.first&.fetch(:processing) == 1 }
      get "/busy"
      body = last_response.body
      process = FiberJob::Queue.processes.first
      expect(body).to include(process[:identity], process[:hostname], process[:pid].to_s, "default (2)", jid)
      expect(body).to include("1 / 2")
      expect(body).not_to include("<script>alert")
      get "/"
      expect(last_response.body).to match(/data-stat="processing">1</)
    end
  end

  it "shows a unique job's lock and an expiring job's deadline on its job page" do
    job_class = Class.new(FiberJob::Job) do
      unique_for 60
      expires_in 600
      def self.name = "WebUniqueJob"
    end
    jid = job_class.perform_async(1)
    get "/jobs/#{jid}"
    expect(last_response.status).to eq(200)
    expect(last_response.body).to include("Unique lock", "held by #{jid} (this job)", "unique_for 60.0 s, until success",
                                          "Expires")
  end

  it "shows the limits per key of a job, and jobs waiting for them, on its job page, the queues page and /metrics" do
    stub_const("WebLimitedJob", Class.new(FiberJob::Job) do
      limits_concurrency to: 1, key: ->(account) { account }
      throttle 5, per: 2
      def perform(_account) = sleep(1)
    end)
    jids = Array.new(3) { WebLimitedJob.perform_async(7) }
    with_worker do
      wait_for { FiberJob::Queue.metrics(["default"])["default"][:limited] == 2 }
      get "/jobs/#{jids.last}"
      expect(last_response.body).to include(%(<span class="badge limited">limited</span>), "Concurrency limit",
                                            "key WebLimitedJob/7: 1 of 1 slots taken, 2 waiting (lease 600.0 s)",
                                            "key WebLimitedJob: 1 of 5 started in the last 2.0 s, 0 waiting")
      get "/queues"
      expect(last_response.body).to match(%r{<td class="num">2</td>\s*<td class="num">\d+</td>\s*<td class="num">\d+</td>\s*<td>})
      get "/metrics"
      expect(last_response.body).to include(%(fiber_job_limited{queue="default"} 2))
    end
  end

  it "lists batches with their progress and callbacks, shows a batch's jobs, and the batch on each member's page" do
    batch = FiberJob::Batch.new(description: "Import #{XSS}")
    batch.on(:success, WebOkJob)
    jids = nil
    batch.jobs { jids = WebOkJob.perform_bulk([[1], [2]]) + [WebDeadJob.perform_async(3)] }
    with_worker do
      wait_for { FiberJob::Batch.status(batch.bid)&.fetch(:dead) == 1 && FiberJob::Batch.status(batch.bid)[:pending] == 1 }
    end
    get "/batches"
    expect(last_response.status).to eq(200)
    expect(last_response.body).to include(batch.bid, "Import &lt;script&gt;", %(<progress max="100" value="66">),
                                          "2 of 3 succeeded", %(<span class="badge ok">complete</span>),
                                          %(<span class="badge dead">death</span>))
    expect(last_response.body).not_to include(XSS)
    get "/batches/#{batch.bid}"
    expect(last_response.body).to include("2 of 3 succeeded", "1 pending job(s) failed at least once, 1 dead", *jids)
    expect(last_response.body.scan(%(<span class="badge ok">succeeded</span>)).size).to eq(2)
    expect(last_response.body).to include(%(<span class="badge dead">dead</span>))
    get "/jobs/#{jids.last}"
    expect(last_response.body).to include("Batch", %(href="/batches/#{batch.bid}"), "2 of 3 succeeded")
    get "/batches/unknown"
    expect(last_response.status).to eq(404)
  end

  it "shows per-class metrics: a Metrics page, a class page with its histogram, and Prometheus series" do
    stub_const("WebMeteredJob", Class.new(FiberJob::Job) { def perform(seconds) = sleep(seconds) })
    WebMeteredJob.perform_bulk([[0.001]] * 20 + [[0.06]] * 2)
    WebFailJob.perform_async(XSS)
    with_worker do
      wait_for { FiberJob::ClassMetrics.for_class("WebMeteredJob")&.fetch(:processed) == 22 && FiberJob::Queue.totals[:retries] == 1 }
    end
    get "/classes"
    expect(last_response.status).to eq(200)
    expect(last_response.body).to include("WebMeteredJob", "WebFailJob", %(<polyline class="processed"), "72 hours")
    row = last_response.body[%r{<tr data-class="WebMeteredJob">.*?</tr>}m]
    expect(row).to match(%r{<td class="num">22</td>\s*<td class="num">0</td>})
    # A 1 ms sleep lands in the first bin only on an idle machine: the bins are read from the
    # store (20 runs under 50 ms, 2 over), and the page must draw exactly those, bin by bin.
    histogram = FiberJob::ClassMetrics.for_class("WebMeteredJob", minutes: 1440)[:histogram]
    expect([histogram[0..3].sum, histogram[4..].sum]).to eq([20, 2])
    get "/classes/WebMeteredJob?minutes=1440"
    expect(last_response.body).to include("Execution time", "last 24 hours")
    expect(last_response.body.scan(/<progress max="(\d+)" value="(\d+)">/).map { |m| m.map(&:to_i) })
      .to eq(histogram.map { |count| [histogram.max, count] })
    get "/classes/NoSuchJob"
    expect(last_response.status).to eq(404)
    get "/metrics"
    series = PrometheusFormat.parse!(last_response.body)
    expect(series[["fiber_job_class_processed_total", { "class" => "WebMeteredJob" }]]).to eq(22)
    expect(series[["fiber_job_class_failed_total", { "class" => "WebFailJob" }]]).to eq(1)
    expect(series[["fiber_job_class_execution_seconds_bucket", { "class" => "WebMeteredJob", "le" => "+Inf" }]]).to eq(22)
    expect(series[["fiber_job_class_execution_seconds_bucket", { "class" => "WebMeteredJob", "le" => "0.05" }]]).to eq(20)
    expect(series[["fiber_job_class_execution_seconds_count", { "class" => "WebMeteredJob" }]]).to eq(22)
    expect(series[["fiber_job_class_execution_seconds_sum", { "class" => "WebMeteredJob" }]]).to be_between(0.12, 1.0)
  end

  it "searches a queue, the scheduled jobs, the retries and the dead set by class, jid or arguments, paginated" do
    populate
    jids = Array.new(30) { |i| WebOkJob.perform_async("invoice-#{i}", i) }
    get "/queues/default?q=invoice-7"
    expect(last_response.body).to include("1 match(es)", jids[7])
    expect(last_response.body).not_to include(jids[8])
    get "/queues/default?q=#{jids[3]}"
    expect(last_response.body).to include(jids[3], "1 match(es)")
    get "/queues/default?q=webokjob"
    expect(last_response.body).to include("32 match(es)", "Page 1 of 2", "q=webokjob")
    get "/queues/default?q=webokjob&page=2"
    expect(last_response.body.scan(%r{<a class="mono" href="/jobs/}).size).to eq(7)
    get "/scheduled?q=#{ERB::Util.url_encode(XSS)}"
    expect(last_response.body).to include(@scheduled_jid, "1 match(es)")
    expect(last_response.body).not_to include(XSS)
    get "/retries?q=WebFailJob"
    expect(last_response.body).to include(@retry_jid)
    get "/dead?q=nothing-like-this"
    expect(last_response.body).to include("No job matches.", "0 match(es)")
    get "/dead?q=WebDeadJob"
    expect(last_response.body).to include(@dead_jid)
  end

  it "pauses and resumes a queue from the queues page (POST with the CSRF token), with a badge" do
    populate
    token = csrf
    get "/queues"
    expect(last_response.body).to include(%(action="/queues/default/pause"), ">Pause<")
    expect(last_response.body).not_to include(">paused<")
    post "/queues/default/pause"
    expect(last_response.status).to eq(403)
    expect(FiberJob::Queue.paused?(:default)).to be(false)
    post "/queues/default/pause", csrf: token
    expect(last_response.status).to eq(303)
    expect(FiberJob::Queue.paused?(:default)).to be(true)
    get "/queues"
    expect(last_response.body).to include(%(<span class="badge quiet">paused</span>), %(action="/queues/default/resume"), ">Resume<")
    get "/metrics"
    expect(last_response.body).to include(%(fiber_job_queue_paused{queue="default"} 1))
    post "/queues/default/resume", csrf: token
    expect(FiberJob::Queue.paused?(:default)).to be(false)
  end

  it "rejects state changes without the CSRF token, and changes nothing" do
    populate
    post "/dead/clear"
    expect(last_response.status).to eq(403)
    get "/"
    post "/dead/clear", csrf: "0" * 64
    expect(last_response.status).to eq(403)
    post "/queues/default/clear", csrf: "bogus"
    expect(last_response.status).to eq(403)
    expect(FiberJob::Queue.totals[:dead]).to eq(1)
    expect(FiberJob::Queue.metrics(["default"])["default"][:size]).to eq(2)
    put "/dead/clear"
    expect(last_response.status).to eq(405)
  end

  it "refuses a token it never issued, even when the cookie matches the form" do
    populate
    [["short", "short"], ["a" * 64, "a" * 64], [csrf.reverse, csrf.reverse]].each do |cookie, field|
      set_cookie "fiber_job_csrf=#{cookie}"
      post "/dead/clear", csrf: field
      expect(last_response.status).to eq(403), "cookie #{cookie.inspect}"
    end
    expect(FiberJob::Queue.totals[:dead]).to eq(1)
    clear_cookies
    token = csrf
    expect(rack_mock_session.cookie_jar["fiber_job_csrf"]).to eq(token)
    post "/dead/clear", csrf: token
    expect(last_response.status).to eq(303)
  end

  it "answers odd requests with 400 or a clamped page, never a server error" do
    WebOkJob.perform_bulk(Array.new(30) { |i| ["job #{i}"] })
    {
      "/queues/default?page=99999999999999999999999" => [200, "Page 1 of 2"],
      "/dead?page=99999999999999999999999" => [200, nil],
      "/queues/default?page[]=1" => [200, "Page 1 of 2"],
      "/queues/default?page[a]=1" => [200, "Page 1 of 2"],
      "/queues/default?page=-3" => [200, "Page 1 of 2"],
      "/queues/default?page=2x" => [200, "Page 1 of 2"],
      "/queues/default?a[b]=1&a[]=2" => [400, nil],
      "/?#{"x" * 5_000_000}=1" => [400, nil],
      "/?#{Array.new(5000) { |i| "p#{i}=1" }.join("&")}" => [400, nil]
    }.each do |path, (status, text)|
      get path
      expect(last_response.status).to eq(status), "#{path[0, 60]}: #{last_response.status}"
      expect(last_response.body).to include(text) if text
    end
    post "/dead/clear", "csrf=#{"x" * 100_000}", "CONTENT_TYPE" => "application/x-www-form-urlencoded"
    expect(last_response.status).to eq(400)
    # A query no browser would send (rack-test refuses to build it).
    status, = described_class.call(Rack::MockRequest.env_for("/queues/default").merge("QUERY_STRING" => "page=%ZZ"))
    expect(status).to eq(400)
  end

  it "shows a heartbeat or cron record another program wrote as bad data on its row" do
    FiberJob.register_cron_jobs
    redis.sadd?("fiber_job:processes", "forged:1:x")
    redis.set("fiber_job:process:forged:1:x", "not a hash")
    redis.sadd?("fiber_job:processes", "odd:2:y")
    redis.hset("fiber_job:process:odd:2:y", "identity", "odd:2:y", "queues", "5", "concurrency", "[\"x\"]",
               "started_at", "soon", "busy", "many")
    redis.hset("fiber_job:cron:last:{default}", "WebCronJob", "yesterday")
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    get "/busy"
    expect(last_response.status).to eq(200)
    expect(last_response.body).to include("forged:1:x", "bad data", "odd:2:y")
    get "/"
    expect(last_response.status).to eq(200)
    get "/cron"
    expect(last_response.status).to eq(200)
    expect(last_response.body).to include("WebCronJob", "bad data", "not an epoch time")
    redis.del("fiber_job:cron:last:{default}")
    redis.set("fiber_job:cron:last:{default}", "a string, not a hash")
    get "/cron"
    expect(last_response.status).to eq(200)
    expect(last_response.body).to include("WebCronJob", "bad data", "is not a hash")
    expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 2
  end

  it "performs every action through FiberJob::Queue" do
    populate
    token = csrf

    post "/queues/default/delete", csrf: token, jid: @queued_jid
    expect(last_response.status).to eq(303)
    expect(last_response.location).to include("/queues/default?notice=Deleted")
    expect(FiberJob::Queue.jobs(:default).map { |j| j["jid"] }).to eq([@other_jid])
    follow_redirect!
    expect(last_response.body).to include("Deleted #{@queued_jid}")

    post "/scheduled/run", csrf: token, queue: "default", jid: @scheduled_jid
    expect(FiberJob::Queue.scheduled_jobs).to be_empty
    expect(FiberJob::Queue.jobs(:default).first["jid"]).to eq(@scheduled_jid) # runs next
    post "/scheduled/run", csrf: token, queue: "default", jid: @scheduled_jid
    expect(last_response.location).to include("no%20longer%20there")

    post "/queues/default/clear", csrf: token
    expect(FiberJob::Queue.metrics(["default"])["default"][:size]).to eq(0)

    post "/retries/run", csrf: token, queue: "default", jid: @retry_jid
    expect(FiberJob::Queue.retries).to be_empty
    expect(FiberJob::Queue.jobs(:default).map { |j| j["jid"] }).to eq([@retry_jid])

    post "/dead/retry", csrf: token, jid: @dead_jid
    expect(FiberJob::Queue.dead_jobs).to be_empty
    expect(FiberJob::Queue.jobs(:default).map { |j| j["jid"] }).to contain_exactly(@retry_jid, @dead_jid)

    later = WebOkJob.perform_in(60, "later")
    post "/scheduled/delete", csrf: token, queue: "default", jid: later
    expect(FiberJob::Queue.scheduled_jobs).to be_empty

    post "/cron/enqueue", csrf: token, name: "WebCronJob"
    expect(FiberJob::Queue.jobs(:default).map { |j| j["class"] }).to include("WebCronJob")
    post "/cron/enqueue", csrf: token, name: "Kernel"
    expect(last_response.status).to eq(400)
    expect(last_response.body).to include("no cron job named &quot;Kernel&quot;")
  end

  it "retries all and clears the dead set, and deletes single dead jobs and retries" do
    populate
    extra = WebDeadJob.perform_async("again")
    with_worker { wait_for(message: "two dead") { FiberJob::Queue.totals[:dead] == 2 } }
    token = csrf
    post "/dead/delete", csrf: token, jid: extra
    expect(FiberJob::Queue.dead_jobs.map { |j| j["jid"] }).to eq([@dead_jid])
    post "/retries/delete", csrf: token, queue: "default", jid: @retry_jid
    expect(FiberJob::Queue.retries).to be_empty
    post "/dead/retry_all", csrf: token
    expect(FiberJob::Queue.totals[:dead]).to eq(0)
    expect(FiberJob::Queue.jobs(:default).map { |j| j["jid"] }).to include(@dead_jid)
    with_worker { wait_for(message: "dead again") { FiberJob::Queue.totals[:dead] == 1 } }
    post "/dead/clear", csrf: token
    expect(FiberJob::Queue.totals[:dead]).to eq(0)
  end

  it "paginates long lists" do
    WebOkJob.perform_bulk(Array.new(60) { |i| ["job #{i}"] })
    get "/queues/default"
    expect(last_response.body).to include("Page 1 of 3", "job 0", "job 24")
    expect(last_response.body).not_to include("job 25")
    get "/queues/default?page=3"
    expect(last_response.body).to include("Page 3 of 3", "job 59")
    expect(last_response.body).not_to include("job 49<")
  end

  it "serves /metrics in strict Prometheus text format, also as a standalone app" do
    populate
    get "/metrics"
    expect(last_response.status).to eq(200)
    expect(last_response.content_type).to eq("text/plain; version=0.0.4; charset=utf-8")
    samples = PrometheusFormat.parse!(last_response.body)
    expect(samples[['fiber_job_queue_size', { "queue" => "default" }]]).to eq(2.0)
    expect(samples[['fiber_job_scheduled', { "queue" => "default" }]]).to eq(1.0)
    expect(samples[['fiber_job_retries', { "queue" => "default" }]]).to eq(1.0)
    expect(samples[['fiber_job_failed_total', { "queue" => "default" }]]).to eq(2.0)
    expect(samples[['fiber_job_dead', {}]]).to eq(1.0)
    expect(samples[['fiber_job_processes', {}]]).to eq(0.0)
    expect(samples[['fiber_job_queue_latency_seconds', { "queue" => "default" }]]).to be >= 0

    status, headers, body = FiberJob::Web::Metrics.call(Rack::MockRequest.env_for("/"))
    expect(status).to eq(200)
    expect(headers["content-type"]).to start_with("text/plain; version=0.0.4")
    latency = ->(all) { all.reject { |(name, _), _| name.end_with?("latency_seconds") } }
    expect(latency[PrometheusFormat.parse!(body.join)]).to eq(latency[samples])
  end

  it "takes an authorization block and Rack middleware such as Basic auth" do
    described_class.authorize { |request| request.get_header("HTTP_X_ADMIN") == "yes" }
    get "/"
    expect(last_response.status).to eq(403)
    header "X-Admin", "yes"
    get "/"
    expect(last_response.status).to eq(200)

    described_class.reset!
    described_class.use(Rack::Auth::Basic, "jobs") { |user, password| user == "ops" && password == "pw" }
    get "/"
    expect(last_response.status).to eq(401)
    basic_authorize "ops", "pw"
    get "/"
    expect(last_response.status).to eq(200)
  end

  it "works mounted under a path, with links, forms and the cookie under it" do
    populate
    mounted = Rack::Builder.new { map("/jobs") { run FiberJob::Web } }.to_app
    session = Rack::Test::Session.new(Rack::MockSession.new(mounted))
    session.get "/jobs/dead"
    body = session.last_response.body
    expect(body).to include('href="/jobs/assets/app.css"', 'action="/jobs/dead/retry"', %(href="/jobs/jobs/#{@dead_jid}"))
    expect(session.last_response.headers["set-cookie"]).to include("path=/jobs")
    token = body[/<meta name="csrf-token" content="(\h{64})">/, 1]
    session.post "/jobs/dead/retry", csrf: token, jid: @dead_jid
    expect(session.last_response.location).to start_with("/jobs/dead?notice=")
    expect(FiberJob::Queue.totals[:dead]).to eq(0)
  end

  it "never shows the Redis password" do
    secured = RedisServer.new(args: ["--requirepass", "hunter2"]).start
    FiberJob.config.redis_cluster = [] # (the cluster pass) this one is about a single Redis
    FiberJob.config.redis_url = "redis://:hunter2@127.0.0.1:#{secured.port}/0"
    get "/"
    expect(last_response.status).to eq(200)
    expect(last_response.body).to include("redis://:***@127.0.0.1:#{secured.port}/0")
    expect(last_response.body).not_to include("hunter2")
  ensure
    secured&.cleanup
  end

  it "answers 503 with a message when Redis is unreachable" do
    FiberJob.configure do |c|
      c.redis_cluster = []
      c.redis_url = "redis://127.0.0.1:1/0"
      c.network_timeout = 0.3
    end
    get "/"
    expect(last_response.status).to eq(503)
    expect(last_response.body).to include("Redis is unreachable")
    get "/metrics"
    expect(last_response.status).to eq(503)
  end
end
