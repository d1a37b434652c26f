# frozen_string_literal: true

require_relative "../support/doc_examples"

# The manual cannot rot: every ```ruby block of README.md and docs/guides/*.md runs
# here, in a Ruby process of its own, through the real gem against the suite's
# redis-server; whatever it enqueues is then run by a worker, and must succeed. A
# block that cannot run alone says why in the comment before its fence
# (spec/support/doc_examples.rb lists the directives). The links between the pages
# are checked too.
RSpec.describe "The manual" do
  # Starts the block's process; returns [pid, output file].
  def start_child(block)
    dir = Dir.mktmpdir("fiber_job-doc")
    (@spawn_dirs ||= []) << dir # removed after the example (kill_spawned)
    plan = File.join(dir, "plan.json")
    File.write(plan, JSON.generate(DocExamples.plan(block, redis_url: TEST_REDIS.url)))
    out = File.join(dir, "out.log")
    # No REDIS_URL: an example that configures Sentinel or a Cluster must not find one.
    env = { "REDIS_URL" => nil, "FIBER_JOB_LOG_LEVEL" => nil, "FIBER_JOB_LOG_FORMAT" => nil }.merge(block.env)
    pid = Process.spawn(env, RbConfig.ruby, "-I", SpecHelpers::LIB, "-r", DocExamples::HELPER,
                        "-e", "DocExamples::Child.main(ARGV[0])", plan,
                        chdir: dir, out: out, err: %i[child out], pgroup: true)
    (@spawned ||= []) << pid
    [pid, out]
  end

  # Waits for the block's process; a block that runs a worker itself is sent TERM each
  # time a worker has started and nothing is left in the queues. Returns [status, TERMs
  # sent]. A process still running at the deadline stays in @spawned, so kill_spawned
  # (after the example) kills it.
  def wait_for_child(pid, out, block)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + DocExamples::CHILD_LIMIT
    stopped = 0
    loop do
      done = Process.wait2(pid, Process::WNOHANG)
      if done
        @spawned.delete(pid)
        return [done.last, stopped]
      end
      if block.worker && File.read(out).scan(/worker \S+ started:/).size > stopped && !work_left?
        Process.kill("TERM", pid)
        stopped += 1
      end
      if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
        raise "#{block.where}: still running after #{DocExamples::CHILD_LIMIT}s (#{stopped} TERM sent):\n#{tail(File.read(out))}"
      end

      sleep 0.02
    end
  end

  def tail(text) = text.length > 3000 ? "…#{text[-3000..]}" : text

  # The children use the suite's single redis-server (TEST_REDIS), also on the Cluster
  # pass; this looks there.
  def work_left?
    @doc_redis ||= Redis.new(url: TEST_REDIS.url)
    @doc_redis.keys("fiber_job:queue:*").any? { |key| @doc_redis.llen(key).positive? } ||
      held_keys(client: @doc_redis).any?
  end

  # spec_helper empties TEST_REDIS only when the suite is not on its Cluster pass.
  before { Redis.new(url: TEST_REDIS.url).tap(&:flushdb).close }
  after { @doc_redis&.close }

  def run_block(block)
    pid, out = start_child(block)
    status, stopped = wait_for_child(pid, out, block)
    output = File.read(out)
    error = output[/^#{DocExamples::ERROR} (.*)$/, 1]
    if error
      e = JSON.parse(error)
      raise "#{e["where"] || block.where}: #{e["class"]}: #{e["message"]}\n#{e["backtrace"].join("\n")}\n--- output:\n#{tail(output)}"
    end
    result = output[/^#{DocExamples::RESULT} (.*)$/, 1]
    unless result && status.success?
      raise "#{block.where}: the process ended (#{status.inspect}) without a result:\n#{tail(output)}"
    end

    # FIBER_JOB_DOC_RESULTS=1 shows what each example did (checks, jobs run).
    warn "#{block.where}: #{result}" if ENV["FIBER_JOB_DOC_RESULTS"]
    [JSON.parse(result), stopped, output]
  end

  DocExamples.blocks.each do |block|
    it "runs #{block.where}#{" (#{block.name})" if block.name}" do
      raise block.errors.join("; ") if block.errors.any?

      skip(block.skip) if block.skip
      result, stopped, output = run_block(block)
      expect(stopped).to be_positive, "#{block.where} runs a worker, none started:\n#{tail(output)}" if block.worker
      expect(result["raised"]).to eq(block.raises) if block.raises
      expect(result["drain"]).to eq("ran").or(eq("nothing to run")).or(eq("not the spec's Redis")),
                                 "#{block.where}: the jobs it enqueued did not finish (#{result["drain"]}):\n#{tail(output)}"
      expect([result["failed"].to_i, result["dead"].to_i]).to eq([0, 0]),
                                                              "#{block.where}: its jobs failed:\n#{tail(output)}"
    end
  end

  it "marks every fenced block with its language, so no Ruby escapes the run above" do
    untagged = DocExamples.files.flat_map do |file|
      DocExamples.fences(file).select { |lang, *| lang.empty? }.map { |_, line, *| "#{file}:#{line - 1}" }
    end
    expect(untagged).to be_empty
  end

  it "links only to files and headings that exist" do
    broken = (DocExamples.files + %w[docs/PERFORMANCE.md CHANGELOG.md]).flat_map do |file|
      DocExamples.links(file).filter_map do |line, path, anchor|
        full = File.join(DocExamples::ROOT, path)
        if !File.exist?(full)
          "#{file}:#{line}: #{path} does not exist"
        elsif anchor && path.end_with?(".md") && !DocExamples.anchors(path).include?(anchor)
          "#{file}:#{line}: #{path} has no heading ##{anchor}"
        end
      end
    end
    expect(broken).to be_empty
  end

  it "lists every guide in the README, and every guide links back to it" do
    guides = DocExamples.files - ["README.md"]
    expect(guides).not_to be_empty
    readme_links = DocExamples.links("README.md").map { |_, path, _| path }
    expect(guides - readme_links).to be_empty
    expect(guides.reject { |g| DocExamples.links(g).any? { |_, path, _| path == "README.md" } }).to be_empty
  end
end
