# frozen_string_literal: true

# Starts real worker processes that share job definitions, for multi-process specs.
# Jobs record what they do with `Record.add(value)`, an LPUSH onto the test Redis list
# "record" (through FiberJob's own client, so no other Redis library is involved).
module WorkerProcesses
  RECORD = <<~RUBY
    module Record
      def self.add(value) = FiberJob.const_get(:Internal).enqueue._push("record", [value.to_s])
    end
  RUBY

  # Starts `count` worker processes running `jobs` (Ruby source defining job classes).
  # Returns [[pid, log], …]; they stop on TERM and are killed after the example.
  def start_workers(count, jobs, config: "", worker: "FiberJob::Worker.new")
    Array.new(count) do
      spawn_ruby(<<~RUBY)
        #{RECORD}
        #{jobs}
        FiberJob.configure { |c| #{config} }
        #{worker}.start
      RUBY
    end
  end

  # A producer process for failover specs: runs `enqueue` (Ruby source using `i`) for
  # i in 0...total, writes each acknowledged i to `dir`/acked, and retries what raised
  # (printing the first error of each class); `prelude` defines the job class.
  # Returns [pid, output file], whose last line is "producer done: errors {…}".
  def start_producer(total, dir:, enqueue:, prelude:, pause:, env: {})
    spawn_ruby(<<~RUBY, env: env)
      #{prelude}
      acked = File.open(File.join(#{dir.dump}, "acked"), "a").tap { |f| f.sync = true }
      errors = Hash.new(0)
      #{total}.times do |i|
        begin
          #{enqueue}
          acked.puts(i)
        rescue FiberJob::Error => e
          errors[e.class] += 1
          warn "enqueue failed: \#{e.class}: \#{e.message}" if errors[e.class] == 1
          sleep 0.05
          retry
        end
        sleep #{pause}
      end
      puts "producer done: errors \#{errors}"
    RUBY
  end

  # Whitespace-split lines of the files matching `pattern` in `dir` (what producers and
  # jobs wrote down).
  def lines_in(dir, pattern) = Dir[File.join(dir, pattern)].flat_map { |f| File.readlines(f).map(&:split) }

  def stop_workers(workers, timeout: 30)
    workers.each { |pid, _| Process.kill("TERM", pid) }
    workers.map { |pid, _| wait_process(pid, timeout: timeout) }
  end

  # What jobs recorded, oldest first.
  def records
    redis.lrange("fiber_job:queue:{record}", 0, -1).reverse
  end

  def percentile(values, pct)
    sorted = values.sort
    sorted[((sorted.size - 1) * pct / 100.0).round]
  end
end
