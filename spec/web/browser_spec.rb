# frozen_string_literal: true

require "selenium-webdriver"
require "socket"

# The Web UI in a real browser: Debian's chromium, headless, driven through
# chromium-driver by selenium-webdriver. The UI and a worker run as real processes
# (`fiber_job web`, `fiber_job`), as they would in production.
RSpec.describe "the Web UI in a browser" do
  SHOTS = File.expand_path("../../docs/images", __dir__)
  CHROMIUM = ENV.fetch("CHROMIUM", "/usr/bin/chromium")
  DRIVER = ENV.fetch("CHROMEDRIVER", "/usr/bin/chromedriver")

  let(:dir) { Dir.mktmpdir("fiber_job-browser") }
  let(:app) { File.join(dir, "app.rb") }

  before do
    File.write(app, <<~RUBY)
      require "fiber_job"
      class BrowserJob < FiberJob::Job
        def perform(n, note = nil) = sleep(0.01)
      end
      class BrowserDeadJob < FiberJob::Job
        def initialize = (super; @max_retries = 0)
        def perform(reason) = raise(IOError, "upstream said: \#{reason}")
      end
      class BrowserRetryJob < FiberJob::Job
        def initialize = (super; @max_retries = 5)
        def retry_delay(_attempt) = 1800
        def perform(*) = raise(Timeout::Error, "API timed out")
      end
      class NightlyReportJob < FiberJob::CronJob
        cron "30 2 * * *"
        def execute_cron_job; end
      end
    RUBY
    load app unless defined?(BrowserJob)
    @web_port = RedisServer.free_port
    @web = spawn_exe("web", "-r", app, "-p", @web_port.to_s)
    wait_for(message: "web server") { port_open?(@web_port) }
    @driver = browser
  end

  after do
    @driver&.quit
    FileUtils.rm_rf(dir)
  end

  def spawn_exe(*args)
    log = File.join(dir, "#{args.first}-#{rand(1 << 20)}.log")
    spawn_fiber_job(*args, log: log)
  end

  def port_open?(port)
    TCPSocket.new("127.0.0.1", port).close
    true
  rescue Errno::ECONNREFUSED
    false
  end

  def browser
    options = Selenium::WebDriver::Chrome::Options.new
    options.binary = CHROMIUM
    %w[--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
       --disable-sync --no-first-run --disable-dev-shm-usage --window-size=1280,860].each { |a| options.add_argument(a) }
    options.add_argument("--user-data-dir=#{File.join(dir, "chrome-profile")}")
    service = Selenium::WebDriver::Service.chrome(path: DRIVER)
    Selenium::WebDriver.for(:chrome, options: options, service: service)
  end

  def visit(path)
    @driver.navigate.to("http://127.0.0.1:#{@web_port}#{path}")
  end

  def stat(name)
    @driver.find_element(css: %([data-stat="#{name}"])).text.delete(",").to_i
  end

  def screenshot(name)
    FileUtils.mkdir_p(SHOTS) if ENV["FIBER_JOB_SCREENSHOTS"]
    target = ENV["FIBER_JOB_SCREENSHOTS"] ? SHOTS : dir
    @driver.save_screenshot(File.join(target, "#{name}.png"))
  end

  it "shows the numbers change while a worker runs, and retries a dead job with a click" do
    BrowserDeadJob.perform_async("503 Service Unavailable")
    BrowserRetryJob.perform_async("invoice", 42)
    worker = spawn_exe("-r", app, "-c", "4")
    wait_for(message: "dead and retry", timeout: 15) { FiberJob::Queue.totals.values_at(:dead, :retries) == [1, 1] }

    visit "/"
    expect(@driver.title).to eq("FiberJob · Dashboard")
    before = stat(:processed)
    3.times { |b| BrowserJob.perform_bulk(Array.new(1000) { |i| [(b * 1000) + i, "batch"] }) }
    # The page is not reloaded: its script polls /stats.json and updates the cards.
    wait_for(message: "the processed count to grow on the page", timeout: 20) { stat(:processed) >= before + 200 }
    wait_for(message: "the chart to draw", timeout: 10) do
      @driver.find_element(css: "polyline.processed").attribute("points").to_s.split.size == 30
    end
    wait_for(message: "a non-zero rate", timeout: 10) { @driver.find_element(id: "rate").text.match?(/\A[1-9][\d,]* processed/) }
    screenshot("dashboard")
    visit "/busy"
    expect(@driver.page_source).to include("running", "BrowserJob")
    screenshot("busy")

    BrowserJob.perform_in(3600, 7, "tomorrow")
    BrowserJob.perform_in(7200, 8, "later")
    visit "/scheduled"
    expect(@driver.find_elements(css: "tbody tr").size).to eq(2)
    screenshot("scheduled")
    visit "/retries"
    expect(@driver.page_source).to include("API timed out")
    screenshot("retries")
    visit "/queues"
    screenshot("queues")
    visit "/cron"
    expect(@driver.page_source).to include("NightlyReportJob", "30 2 * * *")
    screenshot("cron")
    import = FiberJob::Batch.new(description: "Import 2026-12")
    import.on(:success, BrowserJob)
    import.jobs { BrowserJob.perform_bulk(Array.new(500) { |i| [i, "row"] }) }
    wait_for(message: "the batch to succeed", timeout: 20) { FiberJob::Batch.status(import.bid)[:success] }
    visit "/batches"
    expect(@driver.find_element(css: %(tr[data-bid="#{import.bid}"])).text).to include("Import 2026-12", "500 of 500 succeeded")
    screenshot("batches")
    visit "/classes"
    expect(@driver.find_element(css: %(tr[data-class="BrowserJob"])).text).to match(/BrowserJob [\d,]+ 0/)
    screenshot("metrics")
    visit "/classes/BrowserJob"
    expect(@driver.page_source).to include("Execution time", "Runs per minute")
    screenshot("metrics_class")

    # Stop the worker, so the retried job stays enqueued instead of dying again at once.
    Process.kill("TERM", worker)
    expect(wait_process(worker).exitstatus).to eq(0)

    visit "/retries?q=invoice"
    expect(@driver.page_source).to include("1 match(es)")
    screenshot("search")
    visit "/dead"
    dead_jid = FiberJob::Queue.dead_jobs.first["jid"]
    row = @driver.find_element(css: %(tr[data-jid="#{dead_jid}"]))
    row.find_element(css: "summary").click
    expect(row.find_element(css: "pre").text).to include("perform")
    screenshot("dead")
    row.find_element(css: "button.retry").click
    wait_for(message: "the notice") { @driver.find_elements(css: ".notice").any? }
    expect(@driver.find_element(css: ".notice").text).to eq("Retrying #{dead_jid}")
    expect(@driver.find_elements(css: %(tr[data-jid="#{dead_jid}"]))).to be_empty
    expect(FiberJob::Queue.totals[:dead]).to eq(0)
    visit "/jobs/#{dead_jid}"
    expect(@driver.find_element(css: "h1 .badge").text).to eq("enqueued")
    expect(@driver.page_source).to include("BrowserDeadJob", "503 Service Unavailable")
    screenshot("job")
  end
end
