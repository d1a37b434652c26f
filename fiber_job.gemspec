# frozen_string_literal: true

require_relative "lib/fiber_job/version"

Gem::Specification.new do |spec|
  spec.name = "fiber_job"
  spec.version = FiberJob::VERSION
  spec.summary = "Redis-backed background jobs for Ruby with a Rust engine"
  spec.description = "FiberJob runs background jobs from Redis. A Rust core on tokio does the " \
                     "fetching, buffering, concurrency limits, scheduling, retries and recovery; " \
                     "Ruby runs only your job's perform, in fibers or threads."
  spec.authors = ["FiberJob developers"]
  spec.license = "MIT"
  # Run on 3.1, 3.4 and 4.0 (README, "Compatibility").
  spec.required_ruby_version = ">= 3.1", "< 4.1"

  spec.files = Dir[
    "lib/**/*.{rb,erb,css,js,svg}", "ext/fiber_job/extconf.rb", "src/**/*.rs", "Cargo.toml", "Cargo.lock",
    "README.md", "CHANGELOG.md", "LICENSE", "docs/**/*.md", "exe/*"
  ]
  spec.require_paths = ["lib"]
  spec.bindir = "exe"
  spec.executables = ["fiber_job"]
  spec.extensions = ["ext/fiber_job/extconf.rb"]

  # The fiber executor (the default) runs on the async gem's reactor: run on 1.30 and 2.43.
  spec.add_dependency "async", ">= 1.30", "< 3"
  # FiberJob::Web (the dashboard and /metrics) is a Rack app.
  # Run on 2.2 and 3.2.
  spec.add_dependency "rack", ">= 2.2", "< 3.3"
end
