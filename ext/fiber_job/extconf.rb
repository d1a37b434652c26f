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

darwin = RbConfig::CONFIG["host_os"].include?("darwin")
cargo = ENV["CARGO"] || [*ENV.fetch("PATH", "").split(File::PATH_SEPARATOR), File.expand_path("~/.cargo/bin")]
        .map { |dir| File.join(dir, "cargo") }
        .find { |path| File.executable?(path) }
unless cargo
  abort <<~MSG
    fiber_job: building the extension from source needs Rust's cargo (1.88 or newer), and
    none was found on PATH or in ~/.cargo/bin. Either:
      - install Rust: https://rustup.rs (then `gem install fiber_job` again); bindgen also
        needs libclang (#{darwin ? "Xcode's command line tools: xcode-select --install" : "Debian/Ubuntu: apt-get install libclang-dev; Fedora: dnf install clang-devel; Alpine: apk add clang-dev"}), or
      - use a precompiled gem, which needs no toolchain: they are published for
        x86_64-linux, aarch64-linux, x86_64-linux-musl, arm64-darwin and x86_64-darwin
        (RubyGems picks one by itself unless `--platform ruby` or Bundler's
        `force_ruby_platform` asks for the source gem).
  MSG
end

# bindgen (in rb-sys) reads Ruby's headers through libclang, which it loads at build
# time. Look where it looks (clang-sys): LIBCLANG_PATH, llvm-config, the usual library
# directories and, on macOS, Xcode's.
def libclang_dirs(darwin)
  return [ENV["LIBCLANG_PATH"]] if ENV["LIBCLANG_PATH"].to_s != ""

  dirs = []
  begin
    libdir = IO.popen([ENV.fetch("LLVM_CONFIG_PATH", "llvm-config"), "--libdir"], err: File::NULL, &:read).strip
    dirs << libdir unless libdir.empty?
  rescue SystemCallError
    nil # no llvm-config: look in the usual places
  end
  if darwin
    begin
      xcode = IO.popen(%w[xcode-select --print-path], err: File::NULL, &:read).strip
      dirs << "#{xcode}/Toolchains/XcodeDefault.xctoolchain/usr/lib" << "#{xcode}/usr/lib" unless xcode.empty?
    rescue SystemCallError
      nil
    end
    dirs += %w[/Library/Developer/CommandLineTools/usr/lib /opt/homebrew/opt/llvm/lib /usr/local/opt/llvm/lib]
  else
    dirs += %w[/usr/lib /usr/lib64 /usr/local/lib /usr/lib/*-linux-gnu /usr/lib/llvm-*/lib /usr/lib64/llvm*/lib /usr/lib/llvm*/lib]
  end
  dirs
end

libclang = libclang_dirs(darwin).flat_map { |dir| Dir.glob(File.join(dir, "libclang{,-[0-9]*}.{so,dylib}{,.[0-9]*}")) }
if libclang.empty?
  abort <<~MSG
    fiber_job: building the extension from source needs libclang (bindgen reads Ruby's C
    headers with it), and none was found#{ENV["LIBCLANG_PATH"] ? " in LIBCLANG_PATH=#{ENV["LIBCLANG_PATH"]}" : ""}. Install it:
      #{darwin ? "macOS: xcode-select --install (Xcode's command line tools)" : "Debian/Ubuntu: apt-get install libclang-dev; Fedora/RHEL: dnf install clang-devel; Alpine: apk add clang-dev; Arch: pacman -S clang"}
    or, if it is installed somewhere else, set LIBCLANG_PATH to the directory holding it.
    A precompiled gem needs neither Rust nor libclang: they are published for x86_64-linux,
    aarch64-linux, x86_64-linux-musl, arm64-darwin and x86_64-darwin.
  MSG
end

dlext = RbConfig::CONFIG["DLEXT"]
# cargo names a cdylib libfiber_job.so on Linux and libfiber_job.dylib on macOS; Ruby
# loads it as fiber_job.<DLEXT> (.so, .bundle).
built = File.join(target_dir, "release", darwin ? "libfiber_job.dylib" : "libfiber_job.so")
# On macOS the library leaves Ruby's symbols to be found when Ruby loads it, as every
# C extension there does (Linux allows undefined symbols in a shared library anyway).
build = darwin ? "rustc --release --locked --lib" : "build --release --locked --lib"
link = darwin ? " -- -C link-arg=-Wl,-undefined,dynamic_lookup" : ""
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
  \tcd $(ROOT) && RUBY=$(RUBY) $(CARGO) #{build} --target-dir $(TARGET_DIR)#{link}
  \tcp #{q[built]} $(SO).tmp && mv -f $(SO).tmp $(SO)

  install: all
  \tmkdir -p $(DESTDIR)$(sitearchdir)/fiber_job
  \tcp $(SO) $(DESTDIR)$(sitearchdir)/fiber_job/$(SO).tmp && mv -f $(DESTDIR)$(sitearchdir)/fiber_job/$(SO).tmp $(DESTDIR)$(sitearchdir)/fiber_job/$(SO)
  #{keep_target ? "" : "\trm -rf $(TARGET_DIR) $(SO)"}

  clean:
  \trm -f $(SO)

  .PHONY: all install clean FORCE
MAKE
