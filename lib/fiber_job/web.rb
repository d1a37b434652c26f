# frozen_string_literal: true

require "erb"
require "openssl"
require "rack"
require "securerandom"
require_relative "../fiber_job" unless defined?(FiberJob::Queue)
require_relative "web/metrics"

module FiberJob
  # The dashboard: a Rack app. Mount it in Rails (`mount FiberJob::Web => "/jobs"`), in a
  # config.ru (`run FiberJob::Web`), or run `fiber_job web -p 9292`.
  #
  # Every read and action goes through FiberJob::Queue. State changes are POSTs that
  # carry a CSRF token matching the `fiber_job_csrf` cookie (double submit; the cookie is
  # SameSite=Strict and HttpOnly), and the token must be one this app issued: a random
  # half and its HMAC under a secret (`Web.secret=`, FIBER_JOB_WEB_SECRET, or one kept
  # in Redis and shared by every web process). All output is HTML-escaped; nothing in
  # a request names a class to load. Requests the UI never makes (huge query strings,
  # malformed parameters) get 400 before anything runs.
  #
  # Authentication: wrap it in any Rack middleware, or give a block:
  #   FiberJob::Web.use Rack::Auth::Basic, "jobs" do |user, password| … end
  #   FiberJob::Web.authorize { |request| request.env["warden"].user&.admin? }
  class Web
    PER_PAGE = 25
    # Highest page number a link can ask for; beyond it pages are empty anyway (a
    # dead set holds at most 10,000 jobs = 400 pages).
    MAX_PAGE = 1_000_000
    # Longest query string and form body the UI ever sends, with room to spare.
    MAX_QUERY_BYTES = 4096
    MAX_BODY_BYTES = 65_536
    CSRF_COOKIE = "fiber_job_csrf"
    # A CSRF token: 32 hex of randomness, then 32 hex of its HMAC-SHA256.
    CSRF_TOKEN = /\A\h{64}\z/.freeze
    # Errors Rack raises while parsing parameters it cannot make sense of.
    BAD_PARAMS = [Rack::Utils::ParameterTypeError, Rack::Utils::InvalidParameterError, RangeError,
                  EOFError, ArgumentError].tap do |list|
      list << Rack::QueryParser::ParamsTooDeepError if defined?(Rack::QueryParser::ParamsTooDeepError)
    end.freeze
    VIEWS = File.expand_path("web/views", __dir__)
    ASSETS = File.expand_path("web/assets", __dir__)
    ASSET_TYPES = { "app.css" => "text/css", "app.js" => "application/javascript" }.freeze
    TABS = [%w[Dashboard /], %w[Busy /busy], %w[Queues /queues], %w[Scheduled /scheduled],
            %w[Retries /retries], %w[Dead /dead], %w[Failed /failed], %w[Cron /cron]].freeze

    class << self
      # Rack entry point: FiberJob::Web itself is the app.
      def call(env)
        app.call(env)
      end

      # Adds Rack middleware in front of the UI (e.g. Rack::Auth::Basic).
      def use(middleware, *args, &block)
        middlewares << [middleware, args, block]
        @app = nil
      end

      # A block given the Rack::Request; a falsy result answers 403.
      def authorize(&block)
        @authorize = block
        @app = nil
      end

      def middlewares
        @middlewares ||= []
      end

      # Removes middleware and the authorization block (tests).
      def reset!
        @middlewares = []
        @authorize = nil
        @app = nil
        @secret = nil
      end

      # The key CSRF tokens are signed with: every process serving the UI must share
      # it. Set it (32+ bytes), or FIBER_JOB_WEB_SECRET; otherwise one random secret is
      # kept in Redis under the prefix and read once per process.
      attr_writer :secret

      # @api private
      def secret
        @secret ||= ENV["FIBER_JOB_WEB_SECRET"] || FiberJob.client._web_secret(SecureRandom.hex(32))
      end

      # Serves the UI (and /metrics) with WEBrick, or the server Rack picks, until INT/TERM.
      def serve(host: "127.0.0.1", port: 9292)
        require "webrick"
        handler = webrick_handler
        FiberJob.logger.info("FiberJob Web UI on http://#{host}:#{port}/ (redis #{Native.mask_password(FiberJob.config.redis_url)})")
        handler.run(self, Host: host, Port: port, AccessLog: [],
                          Logger: WEBrick::Log.new($stderr, WEBrick::Log::WARN)) do |server|
          %w[INT TERM].each { |sig| trap(sig) { server.shutdown } }
        end
      end

      private

      # Rack 2 ships the WEBrick handler; Rack 3 moved it to the rackup gem.
      def webrick_handler
        require "rack/handler/webrick"
        Rack::Handler::WEBrick
      rescue LoadError
        begin
          require "rackup/handler/webrick"
          Rackup::Handler::WEBrick
        rescue LoadError
          raise FiberJob::ConfigurationError, "fiber_job web needs WEBrick: with Rack 3 add the rackup and webrick gems, " \
                                              "or mount FiberJob::Web in your app's server instead"
        end
      end

      def app
        @app ||= begin
          inner = new(@authorize)
          stack = middlewares
          Rack::Builder.new do
            stack.each { |m, args, block| use(m, *args, &block) }
            run inner
          end.to_app
        end
      end
    end

    def initialize(authorize = nil)
      @authorize = authorize
      @templates = {}
    end

    def call(env)
      if env["QUERY_STRING"].to_s.bytesize > MAX_QUERY_BYTES || env["CONTENT_LENGTH"].to_i > MAX_BODY_BYTES
        return bad_request("the request is larger than any the dashboard sends")
      end

      request = Rack::Request.new(env)
      return [403, { "content-type" => "text/plain" }, ["Forbidden\n"]] if @authorize && !@authorize.call(request)

      Action.new(self, request).respond
    rescue FiberJob::ConnectionError => e
      [503, { "content-type" => "text/plain" }, ["Redis is unreachable: #{e.message}\n"]]
    rescue *BAD_PARAMS => e
      bad_request("malformed parameters (#{e.class})")
    end

    def bad_request(why)
      [400, { "content-type" => "text/plain" }, ["Bad request: #{why}\n"]]
    end

    # A fresh CSRF token. @api private
    def issue_token
      nonce = SecureRandom.hex(16)
      nonce + sign(nonce)
    end

    # Whether `token` is one `issue_token` made (under this secret). @api private
    def issued?(token)
      return false unless token.is_a?(String) && token.match?(CSRF_TOKEN)

      Rack::Utils.secure_compare(sign(token[0, 32]), token[32, 32])
    end

    def sign(nonce)
      OpenSSL::HMAC.hexdigest("SHA256", self.class.secret, nonce)[0, 32]
    end

    # @api private
    def template(name)
      @templates[name] ||= ERB.new(File.read(File.join(VIEWS, "#{name}.erb")), trim_mode: "-").tap do |erb|
        erb.filename = File.join(VIEWS, "#{name}.erb")
      end
    end

    # One request: routing, CSRF, rendering. Views are rendered with this object's
    # binding, so helpers below are what templates may call.
    class Action
      include ERB::Util

      attr_reader :request

      def initialize(web, request)
        @web = web
        @request = request
        @token = request.cookies[CSRF_COOKIE]
        @token = nil unless web.issued?(@token)
        @new_token = @token.nil?
        @token ||= web.issue_token
      end

      def respond
        path = request.path_info.to_s
        path = "/" if path.empty?
        if request.post?
          return forbidden("invalid or missing CSRF token; reload the page and try again") unless csrf_ok?

          post(path)
        elsif request.get? || request.head?
          get(path)
        else
          [405, { "content-type" => "text/plain", "allow" => "GET, POST" }, ["Method not allowed\n"]]
        end
      end

      # --- helpers for views -------------------------------------------------

      def root
        request.script_name.to_s
      end

      def url(path)
        "#{root}#{path}"
      end

      def csrf_field
        %(<input type="hidden" name="csrf" value="#{@token}">)
      end

      # The page asked for, 1 when the parameter is missing or not a number, at most
      # MAX_PAGE (later pages would be empty).
      def page
        raw = request.GET["page"]
        raw.is_a?(String) && raw.match?(/\A\d{1,12}\z/) ? raw.to_i.clamp(1, MAX_PAGE) : 1
      end

      def offset
        (page - 1) * PER_PAGE
      end

      def number(n)
        n.to_i.to_s.reverse.scan(/\d{1,3}/).join(",").reverse
      end

      def time(t)
        return "—" unless t.is_a?(Numeric) || t.is_a?(Time)

        t = Time.at(t) if t.is_a?(Numeric)
        %(<time datetime="#{h(t.utc.iso8601)}" title="#{h(t.utc.iso8601)}">#{h(relative(t))}</time>)
      rescue RangeError, ArgumentError, FloatDomainError
        "—"
      end

      def relative(t)
        diff = t.to_f - Time.now.to_f
        words = duration(diff.abs)
        diff.negative? ? "#{words} ago" : "in #{words}"
      end

      def duration(seconds)
        case seconds
        when 0...1 then "#{(seconds * 1000).round} ms"
        when 1...60 then "#{seconds.round(1)} s"
        when 60...3600 then "#{(seconds / 60).round} min"
        when 3600...86_400 then "#{(seconds / 3600).round(1)} h"
        else "#{(seconds / 86_400).round(1)} d"
        end
      end

      def args(list)
        h(JSON.generate(list || [])[0, 300])
      end

      def job_link(job)
        jid = job["jid"].to_s
        %(<a class="mono" href="#{h(url("/jobs/#{ERB::Util.url_encode(jid)}"))}">#{h(jid)}</a>)
      end

      def display_class(job)
        job["wrapped"] ? "#{job["wrapped"]} (ActiveJob)" : job["class"].to_s
      end

      def pager(total)
        pages = [(total.to_f / PER_PAGE).ceil, 1].max
        return "" if pages == 1

        base = request.path_info
        links = []
        links << %(<a href="#{h(url("#{base}?page=#{page - 1}"))}" rel="prev">← Newer</a>) if page > 1
        links << %(<span>Page #{page} of #{pages}</span>)
        links << %(<a href="#{h(url("#{base}?page=#{page + 1}"))}" rel="next">Older →</a>) if page < pages
        %(<nav class="pager">#{links.join}</nav>)
      end

      def flash
        msg = request.GET["notice"]
        msg.is_a?(String) && !msg.empty? ? %(<p class="notice" role="status">#{h(msg[0, 200])}</p>) : ""
      end

      def render(view, status: 200, **locals)
        locals.each { |k, v| instance_variable_set(:"@#{k}", v) }
        @content = @web.template(view).result(binding)
        @view = view
        html(status, @web.template("layout").result(binding))
      end

      private

      def get(path)
        case path
        when "/" then render("dashboard", totals: Queue.totals, redis: Queue.redis_info)
        when "/stats.json" then stats_json
        when "/metrics" then Metrics.response
        when "/busy" then busy
        when "/queues" then render("queues", queues: Queue.metrics, limits: limits)
        when %r{\A/queues/([\w.:-]+)\z} then queue_page(Regexp.last_match(1))
        when "/scheduled" then waiting_page(:scheduled)
        when "/retries" then waiting_page(:retry)
        when "/dead" then render("dead", jobs: Queue.dead_jobs(limit: PER_PAGE, offset: offset), total: Queue.totals[:dead])
        when "/failed"
          render("failed", jobs: Queue.failed_jobs(limit: PER_PAGE, offset: offset), total: Queue.totals[:failure_records])
        when "/cron" then render("cron", crons: Queue.cron_jobs)
        when %r{\A/jobs/(\h{1,64})\z} then job_page(Regexp.last_match(1))
        when %r{\A/assets/(app\.css|app\.js)\z} then asset(Regexp.last_match(1))
        else not_found
        end
      end

      def post(path)
        params = request.POST
        jid = params["jid"].to_s
        queue = params["queue"].to_s
        case path
        when %r{\A/queues/([\w.:-]+)/delete\z}
          back("/queues/#{Regexp.last_match(1)}", Queue.delete_job(Regexp.last_match(1), jid) ? "Deleted #{jid}" : "#{jid} was no longer queued")
        when %r{\A/queues/([\w.:-]+)/clear\z}
          back("/queues/#{Regexp.last_match(1)}", "Cleared #{Queue.clear(Regexp.last_match(1))} job(s)")
        when %r{\A/(scheduled|retries)/(run|delete)\z}
          set = Regexp.last_match(1) == "scheduled" ? :scheduled : :retry
          action = Regexp.last_match(2)
          done = action == "run" ? Queue.run_now(set, queue, jid) : Queue.delete_waiting(set, queue, jid)
          back("/#{Regexp.last_match(1)}", done ? "#{action == "run" ? "Enqueued" : "Deleted"} #{jid}" : "#{jid} is no longer there")
        when "/dead/retry" then back("/dead", Queue.retry_dead(jid) ? "Retrying #{jid}" : "#{jid} is no longer dead")
        when "/dead/delete" then back("/dead", Queue.delete_dead(jid) ? "Deleted #{jid}" : "#{jid} is no longer dead")
        when "/dead/retry_all" then back("/dead", "Retrying #{Queue.retry_all_dead} job(s)")
        when "/dead/clear" then back("/dead", "Deleted #{Queue.clear_dead_jobs} job(s)")
        when "/cron/enqueue" then back("/cron", "Enqueued #{params["name"]} as #{Queue.enqueue_cron(params["name"].to_s)}")
        else not_found
        end
      rescue ArgumentError => e
        html(400, "<!doctype html><title>Bad request</title><p>#{h(e.message)}</p>")
      end

      # Totals for the cards, and the 10-second windows of the last 5 minutes for the
      # chart (rates per second; the filling window is divided by its elapsed time).
      def stats_json
        now = Time.now.to_f
        windows = Queue.throughput(minutes: 5).map do |w|
          span = [[now - w[:at].to_f, 10.0].min, 1.0].max
          { at: w[:at].to_i, processed: (w[:processed] / span).round(1), failed: (w[:failed] / span).round(1) }
        end
        json(Queue.totals.merge(time: now, throughput: windows))
      end

      def busy
        processes = Queue.processes
        running = processes.flat_map { |p| Queue.taken(p).map { |job| [p, job] } }
        render("busy", processes: processes, running: running)
      end

      def queue_page(name)
        metrics = Queue.metrics([name])[name]
        render("queue", name: name, metrics: metrics, jobs: Queue.jobs(name, offset: offset, limit: PER_PAGE))
      end

      def waiting_page(set)
        totals = Queue.totals
        jobs = set == :scheduled ? Queue.scheduled_jobs(offset: offset, limit: PER_PAGE) : Queue.retries(offset: offset, limit: PER_PAGE)
        render("waiting", set: set, jobs: jobs, total: set == :scheduled ? totals[:scheduled] : totals[:retries])
      end

      def job_page(jid)
        found = Queue.find_job(jid)
        return not_found("No job #{jid} in any queue, set or the dead set (it may have finished).") unless found

        render("job", found: found, jid: jid)
      end

      # Concurrency per queue summed over live processes.
      def limits
        Queue.processes.each_with_object(Hash.new(0)) do |p, acc|
          p[:queues].zip(p[:concurrency]).each { |q, n| acc[q] += n.to_i }
        end
      end

      # The form's token equals the cookie's, and it is one this app issued.
      def csrf_ok?
        sent = request.POST["csrf"]
        cookie = request.cookies[CSRF_COOKIE]
        @web.issued?(cookie) && sent.is_a?(String) && sent.bytesize == cookie.bytesize &&
          Rack::Utils.secure_compare(sent, cookie)
      end

      def back(path, notice)
        [303, headers("location" => url("#{path}?notice=#{ERB::Util.url_encode(notice)}")), []]
      end

      def headers(extra = {})
        base = { "cache-control" => "no-store", "x-content-type-options" => "nosniff",
                 "x-frame-options" => "SAMEORIGIN", "referrer-policy" => "same-origin",
                 "content-security-policy" => "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'self'" }
        base.merge(extra).tap do |hdrs|
          if @new_token
            cookie = "#{CSRF_COOKIE}=#{@token}; path=#{root.empty? ? "/" : root}; HttpOnly; SameSite=Strict"
            cookie += "; Secure" if request.ssl?
            hdrs["set-cookie"] = cookie
          end
        end
      end

      def html(status, body)
        [status, headers("content-type" => "text/html; charset=utf-8"), [body]]
      end

      def json(value)
        [200, headers("content-type" => "application/json"), [JSON.generate(value)]]
      end

      def asset(name)
        body = File.read(File.join(ASSETS, name))
        [200, { "content-type" => ASSET_TYPES.fetch(name), "cache-control" => "public, max-age=3600" }, [body]]
      end

      def not_found(message = "Nothing here.")
        render("not_found", status: 404, message: message)
      end

      def forbidden(message)
        html(403, "<!doctype html><title>Forbidden</title><p>#{h(message)}</p>")
      end
    end
  end
end
