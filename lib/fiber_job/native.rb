# frozen_string_literal: true

# Loads the Rust extension (FiberJob::Native). Built by `rake compile` into this
# directory, or by `gem install` into the gem's extension directory.
begin
  require_relative "fiber_job"
rescue LoadError => e
  raise LoadError, "FiberJob's native extension is not built (#{e.message}). " \
                   "Run `rake compile` (or bin/setup) in the gem's directory."
end
