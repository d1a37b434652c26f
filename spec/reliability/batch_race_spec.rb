# frozen_string_literal: true

# Batches' callbacks exactly once, shaken: 20 batches one after another over 3 real
# worker processes — half with a job that fails once and one that dies, half clean —
# and every fourth round a worker killed -9 while the batch runs (and replaced).
RSpec.describe "batch callbacks under races and kill -9" do
  RACE_JOBS = <<~RUBY
    class RaceRowJob < FiberJob::Job
      def retry_delay(_) = 0.05
      def perform(n, mode)
        sleep 0.02
        raise "fails once" if mode == "flaky" && retry_count.zero?
        if mode == "dies"
          self.max_retries = 0
          raise "dies"
        end
        Record.add("row \#{n}")
      end
    end

    class RaceCallbackJob < FiberJob::Job
      def perform(status, _options)
        Record.add([status["event"], status["bid"], status["total"]].join(" "))
      end
    end
  RUBY

  before(:all) { eval(RACE_JOBS) } # rubocop:disable Security/Eval -- the same classes, to enqueue them

  def fired(bid) = records.grep(/ #{bid} /).map { |r| r.split.first }.sort

  it "fires :complete and :death once and :success never (or :complete and :success once) in each of 20 rounds" do
    config = "c.concurrency = 10"
    workers = start_workers(3, RACE_JOBS, config: config)
    wait_for { redis.scard("fiber_job:processes") == 3 }
    killed_mid_batch = 0
    20.times do |round|
      troubled = round.even?
      batch = FiberJob::Batch.new(description: "round #{round}")
      %i[complete success death].each { |e| batch.on(e, RaceCallbackJob) }
      batch.jobs do
        RaceRowJob.perform_bulk((0...298).map { |i| [i, "ok"] })
        RaceRowJob.perform_async(298, troubled ? "flaky" : "ok")
        RaceRowJob.perform_async(299, troubled ? "dies" : "ok")
      end
      if (round % 4) == 1
        wait_for(timeout: 10) { FiberJob::Batch.status(batch.bid)[:pending] < 250 }
        victim = workers.delete_at(rand(workers.size))
        Process.kill("KILL", victim.first)
        killed_mid_batch += 1 if FiberJob::Batch.status(batch.bid)[:pending].positive?
        wait_process(victim.first)
        workers += start_workers(1, RACE_JOBS, config: config)
      end
      expected = troubled ? %w[complete death] : %w[complete success]
      wait_for(timeout: 30, message: "round #{round}'s callbacks") { fired(batch.bid) == expected }
      sleep 0.2 # a second firing would show by now
      expect(fired(batch.bid)).to eq(expected), "round #{round}: #{fired(batch.bid)}"
      status = FiberJob::Batch.status(batch.bid)
      expect(status.values_at(:total, :pending, :dead)).to eq(troubled ? [300, 1, 1] : [300, 0, 0]), "round #{round}"
      records.grep(/\Arow /).tap { |rows| expect(rows.uniq.size).to eq(troubled ? 299 : 300) }
      redis.del("fiber_job:queue:{record}")
    end
    puts "\n    20 batches of 300 over 3 processes, 5 workers killed -9 (#{killed_mid_batch} mid-batch): every callback once"
    expect(killed_mid_batch).to be >= 1
    stop_workers(workers)
  end
end
