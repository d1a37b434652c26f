# frozen_string_literal: true

require "optparse"
require_relative "../fiber_job"

module FiberJob
  # The `fiber_job` command. `fiber_job [worker] [options]` loads the app and works
  # jobs until TERM/INT; `fiber_job web` serves the Web UI; `version`, `help`.
  # Usage errors (unknown flags, a missing file, a bad value) print one clear line
  # and exit 2. Settings: defaults < config file (-C) < flags.
  class CLI
    USAGE_ERROR = 2

    # Raised for anything the user typed wrong; printed without a backtrace.
    class UsageError < StandardError; end

    def initialize(argv, out: $stdout, err: $stderr)
      @argv = argv.dup
      @out = out
      @err = err
    end

    # @return [Integer] the exit status
    def run
      command = @argv.first&.match?(/\A[a-z]+\z/) ? @argv.shift : "worker"
      case command
      when "worker" then worker(@argv)
      when "web" then web(@argv)
      when "version" then @out.puts("fiber_job #{FiberJob::VERSION}") || 0
      when "help" then @out.puts(help) || 0
      else raise UsageError, "unknown command #{command.inspect}"
      end
    rescue UsageError, OptionParser::ParseError, FiberJob::ConfigurationError => e
      @err.puts("fiber_job: #{e.message}")
      @err.puts("Run `fiber_job help` for usage.")
      USAGE_ERROR
    rescue AppLoadError => e
      @err.puts("fiber_job: #{e.message}")
      1
    end

    # The app could not be loaded (an exception while requiring it).
    class AppLoadError < StandardError; end

    private

    def help
      <<~TEXT
        Usage:
          fiber_job [worker] [options]   work jobs until TERM or INT
          fiber_job web [-p PORT] [-b HOST] [-r PATH]   serve the Web UI
          fiber_job version              print the version
          fiber_job help                 print this help

        Worker options:
        #{worker_parser({}).summarize.join}
        Signals: TERM/INT stop gracefully, TSTP stops fetching (quiet), TTIN logs
        the backtrace of every running job. With -P N the parent passes each of
        them on to every worker process and restarts a worker process that dies.
      TEXT
    end

    def worker_parser(opts)
      OptionParser.new do |o|
        o.banner = ""
        o.on("-r", "--require PATH", "file to load, or a Rails app root (loads config/environment.rb)") { |v| opts[:require] = v }
        o.on("-q", "--queue LIST", "queues to work, comma-separated; NAME:N sets a queue's concurrency") do |v|
          (opts[:queues] ||= []).concat(v.split(",").map(&:strip).reject(&:empty?))
        end
        o.on("-c", "--concurrency N", Integer, "jobs at once per queue") { |v| opts[:concurrency] = v }
        o.on("-C", "--config FILE", "YAML settings (ERB allowed; per-environment sections)") { |v| opts[:config] = v }
        o.on("-t", "--timeout SECONDS", Float, "shutdown timeout: how long running jobs get after TERM") { |v| opts[:timeout] = v }
        o.on("-e", "--environment ENV", "app environment (sets RAILS_ENV, RACK_ENV, APP_ENV)") { |v| opts[:environment] = v }
        o.on("-x", "--executor NAME", "fiber (default) or thread") { |v| opts[:executor] = v }
        o.on("-P", "--processes N", Integer, "fork N worker processes from one loaded app (swarm)") { |v| opts[:processes] = v }
        o.on("-v", "--verbose", "log at debug level") { opts[:verbose] = true }
        o.on("-j", "--json", "log one JSON object per line") { opts[:json] = true }
        o.on("--health-port PORT", Integer, "serve GET /live and /ready on PORT (Kubernetes probes)") { |v| opts[:health_port] = v }
      end
    end

    def worker(argv)
      $stdout.sync = true # log lines reach files and pipes as they happen
      opts = {}
      rest = worker_parser(opts).parse(argv)
      raise UsageError, "unexpected argument #{rest.first.inspect}" unless rest.empty?

      boot(opts)
      if opts[:concurrency] && !opts[:concurrency].positive?
        raise UsageError, "-c must be a positive number of jobs, got #{opts[:concurrency]}"
      end

      if opts[:processes] && !opts[:processes].positive?
        raise UsageError, "-P must be a positive number of processes, got #{opts[:processes]}"
      end
      if opts[:processes] && FiberJob.config.health_port
        raise UsageError, "--health-port checks one process: run one worker per container without -P, or drop --health-port"
      end

      # -q's NAME:N win over -c, which wins over the configuration's concurrency.
      build = lambda do
        FiberJob::Worker.new(queues: opts[:queues] || FiberJob.config.queues, concurrency: opts[:concurrency],
                             executor: opts[:executor])
      end
      return swarm(opts[:processes], build) if opts[:processes]

      build.call.start
      0
    end

    # -P N: the app is loaded once, here; the swarm forks the workers.
    def swarm(count, build)
      require_relative "swarm"
      FiberJob.config.check!
      build.call # validates queues and concurrency before anything is forked
      FiberJob::Swarm.new(count, logger: FiberJob.logger, &build).run
    end

    def web(argv)
      $stdout.sync = true
      opts = { port: 9292, host: "127.0.0.1" }
      rest = OptionParser.new do |o|
        o.on("-p", "--port PORT", Integer, "port (default 9292)") { |v| opts[:port] = v }
        o.on("-b", "--bind HOST", "address (default 127.0.0.1)") { |v| opts[:host] = v }
        o.on("-r", "--require PATH", "file to load, or a Rails app root") { |v| opts[:require] = v }
        o.on("-C", "--config FILE", "YAML settings") { |v| opts[:config] = v }
        o.on("-e", "--environment ENV", "app environment") { |v| opts[:environment] = v }
      end.parse(argv)
      raise UsageError, "unexpected argument #{rest.first.inspect}" unless rest.empty?

      boot(opts)
      require_relative "web"
      FiberJob::Web.serve(host: opts[:host], port: opts[:port])
      0
    end

    # The environment, the app, then the settings (file, then flags).
    def boot(opts)
      environment(opts[:environment])
      load_app(opts[:require])
      configure(opts)
    end

    def environment(env)
      return unless env

      %w[RAILS_ENV RACK_ENV APP_ENV].each { |k| ENV[k] = env }
    end

    # Loads the app: a file, or a Rails root's config/environment.rb. Without -r, a
    # Rails app in the current directory is loaded when there is one.
    def load_app(path)
      if path.nil?
        rails = File.join(Dir.pwd, "config", "environment.rb")
        load_rails(rails) if File.file?(rails)
      elsif File.directory?(path)
        rails = File.join(File.expand_path(path), "config", "environment.rb")
        raise UsageError, "#{path} is a directory without config/environment.rb; pass a Ruby file or a Rails root" unless File.file?(rails)

        load_rails(rails)
      elsif File.file?(path)
        require File.expand_path(path)
      else
        raise UsageError, "no such file to load: #{path}"
      end
    rescue ScriptError, StandardError => e
      raise if e.is_a?(UsageError)

      raise AppLoadError, "loading #{path || "the Rails app"} failed: #{e.class}: #{e.message}\n  " \
                          "#{Array(e.backtrace).first(8).join("\n  ")}"
    end

    # Rails first, then FiberJob's railtie, then the app. This process loaded FiberJob
    # before Rails, so the app's `Bundler.require` finds it loaded and would not add the
    # railtie; without it, Rails 7+ (no classic autoloader) cannot find the ActiveJob
    # adapter that `config.active_job.queue_adapter = :fiber_job` names.
    def load_rails(environment)
      begin
        require "rails"
        require "fiber_job/railtie"
      rescue LoadError
        nil # config/environment.rb of an app that is not a Rails app
      end
      require environment
    end

    def configure(opts)
      env = opts[:environment] || ENV["RAILS_ENV"] || ENV["RACK_ENV"] || ENV["APP_ENV"]
      config = FiberJob.config
      if opts[:config]
        raise UsageError, "no such config file: #{opts[:config]}" unless File.file?(opts[:config])

        config.load_file(opts[:config], env: env)
      end
      FiberJob.configure do |c|
        c.queues = opts[:queues] if opts[:queues]
        c.shutdown_timeout = opts[:timeout] if opts[:timeout]
        c.executor = opts[:executor] if opts[:executor]
        c.log_level = :debug if opts[:verbose]
        c.log_format = :json if opts[:json]
        c.health_port = opts[:health_port] if opts[:health_port]
      end
    end
  end
end
