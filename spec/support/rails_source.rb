# frozen_string_literal: true

# Rails from a source tree instead of the installed gems: with
# FIBER_JOB_RAILS_SRC=/path/to/rails (a `git archive` of a release tag), its frameworks
# go first on this process's load path and, through RUBYLIB, on every process the specs
# start. Their own dependencies (i18n, tzinfo, concurrent-ruby, sqlite3, ...) come
# from the installed gems. Without it the installed ActiveJob is used (Debian's 6.1).
module RailsSource
  FRAMEWORKS = %w[activesupport activemodel activerecord activejob actionpack actionview railties].freeze

  def self.setup(src = ENV.fetch("FIBER_JOB_RAILS_SRC", nil))
    return if src.nil? || src.empty?

    dirs = FRAMEWORKS.map { |f| File.join(File.expand_path(src), f, "lib") }
    missing = dirs.reject { |d| File.directory?(d) }
    unless missing.empty?
      abort "FIBER_JOB_RAILS_SRC=#{src} has no #{missing.join(", ")}: point it at the root of a Rails source tree"
    end
    $LOAD_PATH.unshift(*dirs)
    ENV["RUBYLIB"] = [*dirs, ENV.fetch("RUBYLIB", nil)].compact.reject(&:empty?).join(File::PATH_SEPARATOR)
  end
end

RailsSource.setup
