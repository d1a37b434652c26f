# frozen_string_literal: true

# Which Ruby, YJIT and Sidekiq a bench run measures. The bench runs on the Ruby that runs
# it (`/opt/ruby-3.4/bin/ruby bench/run W1` measures Ruby 3.4); two variables choose the
# rest, for FiberJob and Sidekiq alike:
#
#   SIDEKIQ_VERSION=8.1.7  the Sidekiq gem version to load (several may be installed;
#                          default: the one `require "sidekiq"` finds, Debian's 6.4.1)
#   YJIT=1                 the worker processes of both systems run with --yjit
module BenchStack
  VERSION = ENV.fetch("SIDEKIQ_VERSION", "")
  YJIT = ENV["YJIT"] == "1"

  module_function

  # Activates the chosen Sidekiq before anything requires it.
  def activate
    gem "sidekiq", VERSION unless VERSION.empty?
  end

  # Environment for a worker process: --yjit added to RUBYOPT when asked for.
  def worker_env(env)
    return env unless YJIT

    env.merge("RUBYOPT" => [ENV.fetch("RUBYOPT", nil), "--yjit"].compact.join(" "))
  end

  # The command that starts a Sidekiq server on this Ruby with the chosen version.
  def sidekiq_command(*args)
    return ["sidekiq", *args] if VERSION.empty?

    [RbConfig.ruby, "-e", "gem 'sidekiq', #{VERSION.dump}; load Gem.bin_path('sidekiq', 'sidekiq')", "--", *args]
  end

  # Sidekiq 7.3.3+ ships its own ActiveJob adapter, which a Rails app loads through
  # `sidekiq/rails` (Rails 8.1 deprecates its built-in one): W9 measures that one where
  # the Sidekiq under test has it. It needs ActiveJob installed as a gem.
  def sidekiq_active_job_adapter
    spec = Gem.loaded_specs["sidekiq"] or return
    own = File.join(spec.full_gem_path, "lib/active_job/queue_adapters/sidekiq_adapter.rb")
    require own if File.exist?(own)
  end

  def description
    yjit = YJIT ? "YJIT on" : "YJIT off"
    "Ruby #{RUBY_VERSION} (#{yjit}), Sidekiq #{Sidekiq::VERSION}"
  end
end

BenchStack.activate
