# frozen_string_literal: true

# Loads the Rust extension (FiberJob::Native), built for this Ruby's ABI:
# `lib/fiber_job/<major.minor>/fiber_job.<so|bundle>` (a precompiled platform gem, or
# `rake compile`), else `lib/fiber_job/fiber_job.<so|bundle>` (a source gem's
# `gem install`, which builds it for the Ruby installing it).
module FiberJob
  # The Ruby ABI an extension is built for: one per minor version.
  RUBY_ABI = RUBY_VERSION[/\A\d+\.\d+/]

  if Dir[File.join(__dir__, RUBY_ABI, "fiber_job.{so,bundle}")].any?
    require_relative "#{RUBY_ABI}/fiber_job"
  else
    begin
      require_relative "fiber_job"
    rescue LoadError => e
      built = Dir[File.join(__dir__, "*", "fiber_job.{so,bundle}")].map { |f| File.basename(File.dirname(f)) }.sort
      raise LoadError, "FiberJob's native extension is not built for Ruby #{RUBY_ABI} (#{e.message}). " +
                       (built.empty? ? "Run `rake compile` (or bin/setup) in the gem's directory."
                                     : "This copy has it for Ruby #{built.join(", ")} only; install the gem " \
                                       "with this Ruby (`gem install fiber_job`) or run `rake compile` with it.")
    end
  end
end
