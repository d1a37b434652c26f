# frozen_string_literal: true

require "open3"

# `rake compile` while a worker runs with the library loaded (a spec run recompiling
# under a live worker, a developer's rebuild): the new library is a new file renamed
# over the old one, so the running process keeps its mapped copy and goes on.
RSpec.describe "rake compile under a running worker" do
  root = File.expand_path("../..", __dir__)
  so = File.join(root, "lib", "fiber_job", FiberJob.const_get(:Internal)::RUBY_ABI, "fiber_job.#{RbConfig::CONFIG["DLEXT"]}")

  it "replaces the library by rename, and the worker keeps working" do
    jobs = "class CompileJob < FiberJob::Job; def perform(i) = Record.add(i); end"
    (pid, log), = start_workers(1, jobs)
    wait_for(message: "the worker") { redis.scard("fiber_job:processes") == 1 }
    before = File.stat(so).ino
    out, status = Open3.capture2e(RbConfig.ruby, "-S", "rake", "compile", chdir: root)
    expect(status).to be_success, out
    expect(File.stat(so).ino).not_to eq(before) # a new file, not the old one overwritten
    expect(Dir[File.join(root, "lib", "fiber_job", "**", "*.tmp")]).to be_empty

    raw_push("default", Array.new(50) { |i| JSON.generate("class" => "CompileJob", "args" => [i]) })
    wait_for(timeout: 15, message: "jobs after the rebuild") { records.size == 50 }
    Process.kill("TERM", pid)
    expect(wait_process(pid).exitstatus).to eq(0)
    expect(File.read(log)).not_to include("[BUG]")
  end
end
