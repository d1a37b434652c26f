# frozen_string_literal: true

require "open3"

# `rake native` builds the precompiled platform gem; it is installed here as on a
# machine with no Rust: `env -i`, a PATH without cargo, a HOME without ~/.cargo. It
# must install without building anything, load its engine and run a job. Other Rubies
# (FIBER_JOB_RUBIES="/opt/ruby-3.4/bin/ruby /opt/ruby-4.0/bin/ruby") go into the same
# gem, one library per ABI, and each installs and runs it too.
RSpec.describe "the precompiled platform gem (rake native)", :slow do
  root = File.expand_path("../..", __dir__)
  rubies = [RbConfig.ruby, *ENV.fetch("FIBER_JOB_RUBIES", "").split]

  # What `ruby` (an executable) says of itself.
  def ruby_facts(ruby)
    out, status = Open3.capture2(ruby, "-e", 'print RUBY_VERSION[/\A\d+\.\d+/], "|", Gem.path.join(":")')
    raise "#{ruby}: #{out}" unless status.success?

    abi, gem_path = out.split("|")
    { abi: abi, gem_path: gem_path }
  end

  it "installs with no Rust toolchain reachable, carries no Rust, and runs a job on every Ruby built" do
    Dir.mktmpdir("fiber_job-native") do |dir|
      out, status = Open3.capture2e({ "RUBIES" => rubies.join(" "), "PKG_DIR" => dir },
                                    RbConfig.ruby, "-S", "rake", "native", chdir: root)
      expect(status).to be_success, out
      gem_file = Dir[File.join(dir, "fiber_job-#{FiberJob::VERSION}-#{Gem::Platform.local}.gem")].first
      expect(gem_file).not_to be_nil, "no platform gem in #{Dir.children(dir)}: #{out}"

      rubies.each do |ruby|
        facts = ruby_facts(ruby)
        home = File.join(dir, "home-#{facts[:abi]}")
        gem_home = File.join(dir, "gems-#{facts[:abi]}")
        FileUtils.mkdir_p(home)
        # Only what the installed gem and its dependencies (async, rack) need.
        env = { "PATH" => "/usr/bin:/bin", "HOME" => home, "GEM_HOME" => gem_home,
                "GEM_PATH" => [gem_home, facts[:gem_path]].join(":"), "LANG" => "C.UTF-8" }
        run = ->(*cmd) { Open3.capture2e(env, *cmd, unsetenv_others: true, chdir: dir) }

        out, = run.call("sh", "-c", "command -v cargo rustc rustup; ls -d \"$HOME/.cargo\" 2>/dev/null; true")
        expect(out).to be_empty, "a Rust toolchain is reachable: #{out}"

        out, status = run.call(File.join(File.dirname(ruby), "gem"), "install", "--local", "--no-document", gem_file)
        expect(status).to be_success, out
        expect(out).not_to include("Building native extensions")

        installed = File.join(gem_home, "gems", "fiber_job-#{FiberJob::VERSION}-#{Gem::Platform.local}")
        files = Dir.glob("**/*", base: installed)
        expect(files.grep(/\.rs\z|Cargo\.(toml|lock)\z|\Aext\b|(\A|\/)target\z/)).to be_empty
        expect(files.grep(%r{\Alib/fiber_job/[\d.]+/fiber_job\.so\z}).sort)
          .to eq(rubies.map { |r| "lib/fiber_job/#{ruby_facts(r)[:abi]}/fiber_job.so" }.sort)
        expect(Dir[File.join(gem_home, "extensions", "**", "*.so")]).to be_empty

        engine = File.join(installed, "lib/fiber_job", facts[:abi], "fiber_job.so")
        script = installed_gem_job_script(%(native = $LOADED_FEATURES.grep(/fiber_job\\.so\\z/)
          abort "engine loaded from \#{native}" unless native == [#{engine.dump}]))
        out, status = run.call(ruby, "-e", script)
        expect(status).to be_success, out
        expect(out).to include("performed 1 two on #{facts[:abi]}")

        out, status = run.call(File.join(gem_home, "bin", "fiber_job"), "version")
        expect([out, status.exitstatus]).to eq(["fiber_job #{FiberJob::VERSION}\n", 0])
      end
    end
  end

  it "names the Rubies it has, and the source gem, when this Ruby's engine is not in it" do
    Dir.mktmpdir("fiber_job-native") do |dir|
      FileUtils.cp_r(File.join(root, "lib"), dir)
      lib = File.join(dir, "lib", "fiber_job")
      Dir[File.join(lib, "[0-9]*.[0-9]*")].each { |abi| FileUtils.rm_rf(abi) }
      FileUtils.mkdir_p(File.join(lib, "9.8"))
      FileUtils.mkdir_p(File.join(lib, "9.10"))
      FileUtils.cp(Dir[File.join(root, "lib/fiber_job", FiberJob.const_get(:Internal)::RUBY_ABI, "fiber_job.so")].first, File.join(lib, "9.8"))
      FileUtils.cp(File.join(lib, "9.8", "fiber_job.so"), File.join(lib, "9.10"))

      out, status = Open3.capture2e({ "RUBYOPT" => nil, "RUBYLIB" => nil }, RbConfig.ruby, "-I", File.join(dir, "lib"),
                                    "-e", 'begin; require "fiber_job/native"; rescue LoadError => e; puts e.message; end')
      expect(status).to be_success
      expect(out).to include("not built for Ruby #{FiberJob.const_get(:Internal)::RUBY_ABI}")
        .and include("for Ruby 9.8, 9.10 only")
        .and include("gem install fiber_job --platform ruby")
    end
  end
end
