# frozen_string_literal: true

require "stringio"
require "fiber_job/cli"

# The command's parsing, in this process (spec/operations/cli_spec.rb runs it as a
# real process with signals).
RSpec.describe FiberJob::CLI do
  def run(*argv)
    out = StringIO.new
    err = StringIO.new
    status = described_class.new(argv, out: out, err: err).run
    [status, out.string, err.string]
  end

  it "prints its version and help" do
    expect(run("version")).to eq([0, "fiber_job #{FiberJob::VERSION}\n", ""])
    status, out, = run("help")
    expect(status).to eq(0)
    expect(out).to include("fiber_job [worker] [options]", "--queue LIST", "TTIN")
  end

  it "answers usage errors with one line and status 2, before starting anything" do
    {
      %w[frobnicate] => /unknown command "frobnicate"/,
      %w[--nope] => /invalid option: --nope/,
      %w[-c 0] => /-c must be a positive number of jobs, got 0/,
      %w[-q bad/name] => /"bad\/name" is not a queue name/,
      %w[-r /no/such/file.rb] => /no such file to load/,
      %w[-C /no/such.yml] => /no such config file/,
      %w[-x warp] => /executor "warp" is not one of/
    }.each do |argv, message|
      status, _, err = run(*argv)
      expect(status).to eq(2), argv.inspect
      expect(err).to match(message)
      expect(err).to include("fiber_job help")
    end
  end
end
