# frozen_string_literal: true

# Builds FiberJob's Rust engine. Neither the rb_sys gem nor rake-compiler is needed:
# this writes a Makefile whose targets run `cargo build --release` and install the
# library as fiber_job/fiber_job.so under sitearchdir (which RubyGems points at the
# gem's extension directory; `rake compile` copies it into lib/ instead).
#
# FIBER_JOB_CARGO_TARGET_DIR keeps cargo's build directory somewhere lasting (rake
# compile uses the repo's target/ for fast rebuilds). Without it the build happens in
# ./target next to this Makefile and `make install` deletes it afterwards, so an
# installed gem does not carry hundreds of MB of build artefacts.
require "rbconfig"
require "shellwords"

root = File.expand_path("../..", __dir__)
keep_target = ENV.key?("FIBER_JOB_CARGO_TARGET_DIR")
target_dir = File.expand_path(ENV.fetch("FIBER_JOB_CARGO_TARGET_DIR", File.join(Dir.pwd, "target")))

cargo = ENV["CARGO"] || [*ENV.fetch("PATH", "").split(File::PATH_SEPARATOR), File.expand_path("~/.cargo/bin")]
        .map { |dir| File.join(dir, "cargo") }
        .find { |path| File.executable?(path) }
abort "fiber_job: cargo (the Rust toolchain) is needed to build the extension; install it from rustup or your distribution" unless cargo

dlext = RbConfig::CONFIG["DLEXT"]
built = File.join(target_dir, "release", "libfiber_job.so")
sitearchdir = RbConfig::CONFIG["sitearchdir"]
q = ->(s) { Shellwords.escape(s) }

File.write("Makefile", <<~MAKE)
  # Written by ext/fiber_job/extconf.rb; see there.
  CARGO = #{q[cargo]}
  ROOT = #{q[root]}
  TARGET_DIR = #{q[target_dir]}
  RUBY = #{q[RbConfig.ruby]}
  sitearchdir = #{q[sitearchdir]}
  SO = fiber_job.#{dlext}

  all: $(SO)

  # Every copy goes to a new file renamed over the old one: a process that has the
  # old library mapped keeps it, where a copy in place would crash it (SIGBUS).
  $(SO): FORCE
  \tcd $(ROOT) && RUBY=$(RUBY) $(CARGO) build --release --locked --lib --target-dir $(TARGET_DIR)
  \tcp #{q[built]} $(SO).tmp && mv -f $(SO).tmp $(SO)

  install: all
  \tmkdir -p $(DESTDIR)$(sitearchdir)/fiber_job
  \tcp $(SO) $(DESTDIR)$(sitearchdir)/fiber_job/$(SO).tmp && mv -f $(DESTDIR)$(sitearchdir)/fiber_job/$(SO).tmp $(DESTDIR)$(sitearchdir)/fiber_job/$(SO)
  #{keep_target ? "" : "\trm -rf $(TARGET_DIR) $(SO)"}

  clean:
  \trm -f $(SO)

  .PHONY: all install clean FORCE
MAKE
