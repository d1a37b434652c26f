# frozen_string_literal: true

require "erb"
require "openssl"
require "rack"
require "securerandom"
require_relative "../fiber_job" unless defined?(FiberJob::Queue)
require_relative "web/metrics"
require_relative "web/helpers"
require_relative "web/search"
require_relative "web/action"

module FiberJob
  # The dashboard: a Rack app. Mount it in Rails (`mount FiberJob::Web => "/jobs"`), in
  # a config.ru (`run FiberJob::Web`), or run `fiber_job web -p 9292`. This file: the
  # app, its settings and the CSRF tokens; `web/action.rb`: routing and pages;
  # `web/helpers.rb`: what views call; `web/views/`, `web/assets/`; `web/metrics.rb`.
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
    # queue's dead set holds at most 10,000 jobs = 400 pages).
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
            %w[Retries /retries], %w[Dead /dead], %w[Failed /failed], %w[Cron /cron],
            %w[Batches /batches], %w[Metrics /classes]].freeze

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
        @secret ||= ENV["FIBER_JOB_WEB_SECRET"] || Internal.admin._web_secret(SecureRandom.hex(32))
      end

      # Serves the UI (and /metrics) with WEBrick, or the server Rack picks, until INT/TERM.
      def serve(host: "127.0.0.1", port: 9292)
        require "webrick"
        handler = webrick_handler
        FiberJob.logger.info("FiberJob Web UI on http://#{host}:#{port}/ (redis #{FiberJob.config.redis_description})")
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
  end
end
