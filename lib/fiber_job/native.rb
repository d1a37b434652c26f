# frozen_string_literal: true

# Loads the Rust extension (FiberJob::Internal::Native), built for this Ruby's ABI:
# `lib/fiber_job/<major.minor>/fiber_job.<so|bundle>` (a precompiled platform gem, or
# `rake compile`), else `lib/fiber_job/fiber_job.<so|bundle>` (a source gem's
# `gem install`, which builds it for the Ruby installing it).
module FiberJob
  module Internal
    # The Ruby ABI an extension is built for: one per minor version.
    RUBY_ABI = RUBY_VERSION[/\A\d+\.\d+/]

    # What to do when no engine loads: the source gem builds one for any Ruby.
    SOURCE_GEM_ADVICE = "Install the source gem, which builds the engine for this Ruby " \
                        "(needs Rust's cargo and libclang): `gem install fiber_job --platform ruby`, " \
                        "or with Bundler `bundle config set force_ruby_platform true`. In a checkout, " \
                        "run `rake compile` with this Ruby."
    private_constant :SOURCE_GEM_ADVICE

    if Dir[File.join(__dir__, RUBY_ABI, "fiber_job.{so,bundle}")].any?
      begin
        require_relative "#{RUBY_ABI}/fiber_job"
      rescue LoadError => e
        # Built, but this system cannot load it: most often an older C library than the
        # one it was built against (`GLIBC_2.xx not found`).
        raise LoadError, "FiberJob's precompiled engine for Ruby #{RUBY_ABI} on #{RUBY_PLATFORM} " \
                         "does not load on this system (#{e.message}). #{SOURCE_GEM_ADVICE}"
      end
    else
      begin
        require_relative "fiber_job"
      rescue LoadError => e
        built = Dir[File.join(__dir__, "*", "fiber_job.{so,bundle}")].map { |f| File.basename(File.dirname(f)) }
        have = built.sort_by { |abi| Gem::Version.new(abi) }.join(", ")
        raise LoadError, "FiberJob's native engine is not built for Ruby #{RUBY_ABI} (#{e.message}). " +
                         (built.empty? ? "Run `rake compile` (or bin/setup) in the gem's directory."
                                       : "This copy has it for Ruby #{have} only. #{SOURCE_GEM_ADVICE}")
      end
    end
  end
end
