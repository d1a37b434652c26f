# frozen_string_literal: true

require "open3"

# Builds the gem, installs it into a scratch GEM_HOME (compiling the Rust crate through
# extconf.rb, as `gem install` does on a user's machine) and uses it from another
# directory. The slowest spec (a cold cargo build, about 80 s here).
RSpec.describe "gem build and gem install", :slow do
  root = File.expand_path("../..", __dir__)
  # This Ruby's gem command, not whichever is first on PATH.
  gem = File.join(RbConfig::CONFIG["bindir"], "gem")

  it "installs a gem that works from another directory and carries no cargo target/" do
    Dir.mktmpdir("fiber_job-gem") do |dir|
      gem_home = File.join(dir, "gems")
      env = { "GEM_HOME" => gem_home, "GEM_PATH" => [gem_home, *Gem.path].join(":"), "RUBYOPT" => nil, "RUBYLIB" => nil }
      out, status = Open3.capture2e(env, gem, "build", "fiber_job.gemspec", "-o", File.join(dir, "fiber_job.gem"), chdir: root)
      expect(status).to be_success, out
      out, status = Open3.capture2e(env, gem, "install", "--local", "--no-document", File.join(dir, "fiber_job.gem"), chdir: dir)
      expect(status).to be_success, out

      installed = Dir[File.join(gem_home, "gems", "fiber_job-*")].first
      expect(Dir[File.join(installed, "**", "target")]).to be_empty
      expect(Dir[File.join(gem_home, "**", "fiber_job.so")]).not_to be_empty

      script = installed_gem_job_script(%(abort "loaded from the repo" if $LOADED_FEATURES.grep(%r{#{root}/lib}).any?))
      out, status = Open3.capture2e(env, RbConfig.ruby, "-e", script, chdir: dir)
      expect(status).to be_success, out
      expect(out).to include("performed 1 two")

      # The gem installs the `fiber_job` command, and the Web UI's files.
      out, status = Open3.capture2e(env, File.join(gem_home, "bin", "fiber_job"), "version", chdir: dir)
      expect([out, status.exitstatus]).to eq(["fiber_job #{FiberJob::VERSION}\n", 0])
      expect(File).to exist(File.join(installed, "lib", "fiber_job", "web", "assets", "app.css"))
      expect(Dir[File.join(installed, "lib", "fiber_job", "web", "views", "*.erb")].size).to be >= 10
    end
  end

  it "stops before building, saying what to install, where there is no cargo" do
    Dir.mktmpdir("fiber_job-gem") do |dir|
      out, status = Open3.capture2e({ "RUBYOPT" => nil, "RUBYLIB" => nil }, gem, "build", "fiber_job.gemspec",
                                    "-o", File.join(dir, "fiber_job.gem"), chdir: root)
      expect(status).to be_success, out
      FileUtils.mkdir_p(File.join(dir, "home"))
      env = { "PATH" => "/usr/bin:/bin", "HOME" => File.join(dir, "home"), "GEM_HOME" => File.join(dir, "gems"),
              "GEM_PATH" => [File.join(dir, "gems"), *Gem.path].join(":"), "LANG" => "C.UTF-8" }
      out, status = Open3.capture2e(env, gem, "install", "--local", "--no-document", File.join(dir, "fiber_job.gem"),
                                    unsetenv_others: true, chdir: dir)
      expect(status).not_to be_success
      expect(out).to include("needs Rust's cargo").and include("https://rustup.rs")
        .and include("x86_64-linux, aarch64-linux")
      expect(Dir[File.join(dir, "gems", "gems", "fiber_job-*", "lib", "fiber_job", "*.so")]).to be_empty
    end
  end
end
