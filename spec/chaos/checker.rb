# frozen_string_literal: true

require "set"
require_relative "settings"

module Chaos
  # Reads what a chaos run's processes logged (see jobs.rb for the lines), the faults it
  # injected and what Redis holds at the end (the dead set, the counters), and says what
  # went wrong: jobs lost, runs twice that no fault explains, and every broken promise —
  # unique, concurrency and throttle limits, early starts, batch callbacks, iterable
  # cursors, cron ticks, counters. A duplicate or violation is *attributed* when a fault
  # that can cause it (named, in the output) struck a process involved, or all of them,
  # while it happened; only unattributed ones fail the run.
  class Checker
    Run = Struct.new(:jid, :attempt, :pid, :start, :klass, :tag, :finish, :result) do
      def ok? = result == "ok"
    end
    Enqueue = Struct.new(:jid, :klass, :key, :due, :at)

    # Counts and findings; `report` prints them, ending with the one-line summary.
    class Result
      attr_reader :counts, :findings

      def initialize
        @counts = Hash.new(0)
        @findings = []
      end

      # A finding: `kind` (e.g. :lost, :duplicate), attributed to `fault` (a Faults::Done) or not.
      def add(kind, text, fault: nil, fails: true)
        @findings << [kind, text, fault]
        return if fault || !fails

        @counts[kind == :lost ? :lost : :violations] += 1 unless kind == :duplicate
      end

      def ok? = @counts[:lost].zero? && @counts[:unattributed].zero? && @counts[:violations].zero?

      def summary
        "chaos: jobs=#{@counts[:jobs]} faults=#{@counts[:faults]} lost=#{@counts[:lost]} " \
          "duplicates=#{@counts[:duplicates]} unattributed=#{@counts[:unattributed]} violations=#{@counts[:violations]}"
      end

      def report(out)
        grouped = @findings.group_by { |kind, _, fault| [kind, fault ? "attributed" : "UNATTRIBUTED"] }
        grouped.each do |(kind, how), list|
          out.puts "chaos: #{list.size} #{kind} (#{how})"
          list.first(5).each do |_, text, fault|
            out.puts "  #{text}#{fault ? " — #{fault.kind} of #{fault.target} at #{fault.from.round(2)}" : ""}"
          end
        end
        @counts.each { |k, v| out.puts "chaos: #{k} #{v}" unless %i[jobs faults lost duplicates unattributed violations].include?(k) }
        out.puts summary
      end
    end

    # @param dir [String] the run's log directory
    # @param faults [Array<Faults::Done>]
    # @param dead [Hash{jid => error_class}] the dead set at the end
    # @param totals [Hash] :processed and :failed counters at the end (nil: not checked)
    # @param tolerance [Float] seconds: how early a job may appear to start (clock reads)
    def initialize(dir, faults:, dead: nil, totals: nil, tolerance: 0.05)
      @dir = dir
      @faults = faults
      @dead = dead || dead_set
      @totals = totals || FiberJob::Queue.totals
      @tolerance = tolerance
      @enqueued = {}
      @runs = Hash.new { |h, k| h[k] = [] }
      @resumes = Hash.new { |h, k| h[k] = [] }
      @items = Hash.new { |h, k| h[k] = [] }
      @batches = {}
      @offset = Time.now.to_f - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      @result = Result.new
    end

    def check
      read_logs
      @result.counts[:faults] = @faults.size
      @result.counts[:jobs] = (@enqueued.keys | @runs.keys).size
      check_lost
      check_duplicates
      check_unique
      check_concurrency
      check_throttle
      check_early_starts
      check_batches
      check_iterables
      check_cron
      check_counters
      @result
    end

    private

    def dead_set
      jobs = []
      offset = 0
      loop do
        page = FiberJob::Queue.dead_jobs(limit: 1000, offset: offset)
        jobs.concat(page)
        break if page.size < 1000

        offset += 1000
      end
      jobs.to_h { |job| [job["jid"], job["error_class"]] }
    end

    # A process may run one attempt of a job twice at once (a worker resumed after a
    # stop runs what it held while its jobs, reclaimed meanwhile, come back to it from
    # the queue): its runs of one jid and attempt end in the order they started, so each
    # F line ends the oldest of them still open. (Which of two identical runs ended
    # first changes no check: how many runs are open at any time is the same.)
    def read_logs
      open_runs = Hash.new { |h, k| h[k] = [] }
      Dir[File.join(@dir, "*.log")].each do |file|
        File.foreach(file) do |line|
          f = line.split
          case f[0]
          when "E" then @enqueued[f[1]] = Enqueue.new(f[1], f[2], f[3], f[4] == "-" ? nil : f[4].to_f, f[5].to_f)
          when "S"
            run = Run.new(f[1], f[2].to_i, f[3].to_i, f[4].to_f, f[5], f[6])
            @runs[run.jid] << run
            open_runs[[run.jid, run.attempt, run.pid]] << run
          when "F"
            run = open_runs[[f[1], f[2].to_i, f[3].to_i]].shift
            if run
              run.finish = f[4].to_f
              run.result = f[5]
            end
          when "R" then @resumes[f[1]] << [f[2] == "-" ? -1 : f[2].to_i, f[3].to_f]
          when "I" then @items[f[1]] << [f[2].to_i, f[3].to_f]
          when "B" then @batches[f[1]] = f[2].to_i
          end
        end
      end
      @runs.each_value { |list| list.sort_by!(&:start) }
    end

    # When a run ended: its F line, else the death of its process (a fault), else never.
    # A process dies once: a run it logged after the fault began (between the fault's
    # clock read and the signal landing) ended when it did.
    def ended(run)
      return run.finish if run.finish

      death = @faults.find { |f| f.target == run.pid && %i[worker_kill worker_term].include?(f.kind) && f.to >= run.start }
      death ? [death.from, run.start].max : Float::INFINITY
    end

    # Faults that can make a job run again: its process died or stopped, was cut off
    # from Redis longer than the heartbeat's lease, or Redis lost recent writes (an AOF
    # without fsync on every write, asynchronous replication). A short stall, a dropped
    # connection, latency, a full Redis or a killed client cannot.
    RERUN = %i[worker_kill worker_term worker_stop net_partition redis_kill_everysec failover master_kill
               cluster_master_kill].freeze
    # Faults that can let a process run a job while Redis thinks it is gone (its lease or
    # hold expired), or make Redis forget a start or a lock.
    OVERRUN = %i[worker_stop net_partition redis_kill_everysec failover master_kill cluster_master_kill].freeze
    # Faults that can make Redis forget writes it acknowledged.
    # Faults during which Redis takes no writes.
    OUTAGE = %i[redis_kill redis_kill_everysec redis_full failover master_kill cluster_master_kill].freeze
    FORGET = %i[redis_kill_everysec failover master_kill cluster_master_kill].freeze

    # The fault of `kinds` that explains something happening to `pids` between `from`
    # and `to`: one aimed at one of them first, else one that hit every process; of
    # those, the latest to begin (the nearest cause, named in the report).
    def fault_for(pids, from, to, kinds: RERUN)
      candidates = @faults.select { |f| kinds.include?(f.kind) && f.from <= to && f.to >= from }
      candidates.select { |f| pids.include?(f.target) }.max_by(&:from) ||
        candidates.select { |f| f.target == "*" }.max_by(&:from)
    end

    def check_lost
      @enqueued.each_value do |e|
        runs = @runs[e.jid]
        error = @dead[e.jid]
        if runs.any?(&:ok?)
          next
        elsif error.nil?
          # Redis acknowledged a write (the enqueue, or the job's last outcome) that a
          # failover then lost with what the promoted replica had not received.
          last = [e.at, *runs.map { |r| r.finish || r.start }].max
          fault = fault_for([], last - 1, last + 30, kinds: FORGET)
          @result.add(:lost, "#{e.klass} #{e.jid} (enqueued at #{e.at.round(2)}): never succeeded, not in the dead set " \
                             "(#{runs.size} runs)", fault: fault)
          @result.counts[:lost_to_replication] += 1 if fault
        elsif e.klass == "ChaosDoomed"
          attempts = runs.map(&:attempt).uniq.size
          next if attempts == DOOMED_RETRIES + 1 || error != "RuntimeError"

          @result.add(:retries, "#{e.jid} dead after #{attempts} attempts, not #{DOOMED_RETRIES + 1}")
        else
          # Buried for a fault (a poison pill: its workers died under it), not its own failure.
          @result.counts[:"dead_by_#{error}"] += 1
        end
      end
      @result.counts[:dead] = @dead.size
    end

    # A run is a duplicate when an earlier run of its jid had the same attempt or
    # succeeded. It is attributed to a fault on either process (or on Redis) between
    # the earlier run's start (less the prefetch a worker may hold) and its own.
    def check_duplicates
      @runs.each_value do |runs|
        runs.each_with_index do |run, i|
          earlier = runs[0...i].reverse.find { |r| r.attempt == run.attempt || r.ok? }
          next unless earlier

          @result.counts[:duplicates] += 1
          fault = fault_for([earlier.pid, run.pid], earlier.start - 30, run.start)
          @result.counts[:unattributed] += 1 unless fault
          @result.add(:duplicate, "#{run.klass} #{run.jid} attempt #{run.attempt}: ran at #{earlier.start.round(2)} " \
                                  "(pid #{earlier.pid}, #{earlier.result || "no end"}) and #{run.start.round(2)} (pid #{run.pid})",
                      fault: fault)
        end
      end
    end

    # Unique jobs: a key is enqueued again only once its job succeeded, and two jobs of
    # a key never run at once.
    def check_unique
      @enqueued.values.select { |e| e.klass == "ChaosUnique" }.group_by(&:key).each do |key, list|
        list.sort_by(&:at).each_cons(2) do |a, b|
          released = @runs[a.jid].select(&:ok?).map(&:finish).min || (@dead[a.jid] && Float::INFINITY)
          next if released && b.at >= released - @tolerance

          fault = fault_for(@runs[a.jid].map(&:pid), a.at, b.at, kinds: FORGET)
          @result.add(:unique, "key #{key}: #{b.jid} enqueued at #{b.at.round(2)} while #{a.jid} was pending", fault: fault)
        end
      end
      overlaps("ChaosUnique", 1, :unique_overlap)
    end

    def check_concurrency = overlaps("ChaosLimited", LIMIT_TO, :concurrency)

    # Runs of `klass` per key (tag), swept in time: more than `limit` at once is a violation.
    def overlaps(klass, limit, kind)
      @runs.values.flatten.select { |r| r.klass == klass }.group_by(&:tag).each do |key, runs|
        # (Ends before starts at the same time; a run that ended as it started overlaps nothing.)
        events = runs.select { |r| ended(r) > r.start }.flat_map { |r| [[r.start, 1, r], [ended(r), -1, r]] }
        events.sort_by! { |t, d, _| [t, d] }
        running = []
        events.each do |time, delta, run|
          delta.positive? ? running << run : running.delete(run)
          # Jobs, not runs: a job running twice at once is a duplicate (judged above).
          jobs = running.map(&:jid).uniq.size
          next unless jobs > limit

          # A fault on any worker that ran one of these jobs: a frozen worker whose job
          # was recovered and run again elsewhere ends the job's lease when it comes
          # back, under the copy still running (the lease is the job's, not the run's).
          pids = running.flat_map { |r| @runs[r.jid].map(&:pid) }.uniq
          fault = fault_for(pids, running.map(&:start).min - 30, time, kinds: OVERRUN)
          spans = running.map { |r| "#{r.jid} (pid #{r.pid}, #{r.start.round(2)}..#{ended(r).round(2)})" }
          @result.add(kind, "key #{key}: #{jobs} running at #{time.round(2)} (limit #{limit}): #{spans.join(", ")}", fault: fault)
          break
        end
      end
    end

    # No window of THROTTLE_PER seconds holds more than THROTTLE starts of a key.
    # Starts of jobs, not runs: the same attempt of a job run twice (a fault pushed or
    # recovered it twice) counts once here; its second run is a duplicate, judged above.
    def check_throttle
      @runs.values.flatten.select { |r| r.klass == "ChaosThrottled" }.group_by(&:tag).each do |key, runs|
        runs = runs.sort_by(&:start).uniq { |r| [r.jid, r.attempt] }
        runs.each_cons(THROTTLE + 1) do |window|
          span = window.last.start - window.first.start
          next if span >= THROTTLE_PER - @tolerance

          fault = fault_for(window.map(&:pid), window.first.start - 10, window.last.start, kinds: OVERRUN)
          starts = window.map { |r| "#{r.jid} (pid #{r.pid}, attempt #{r.attempt}, #{r.start.round(3)})" }
          @result.add(:throttle, "key #{key}: #{THROTTLE + 1} starts within #{span.round(3)} s at #{window.first.start.round(2)}: " \
                                 "#{starts.join(", ")}", fault: fault)
          break
        end
      end
    end

    # No job starts before its due time; no retry before its failure plus its delay (1 s).
    def check_early_starts
      @runs.each do |jid, runs|
        due = @enqueued[jid]&.due
        first = runs.find { |r| r.attempt.zero? }
        if due && first && first.start + @offset < due - @tolerance
          @result.add(:early, "#{jid} started #{(due - first.start - @offset).round(3)} s before its due time (pid #{first.pid})")
        end
        runs.each do |retry_run|
          failed = runs.select { |r| r.attempt == retry_run.attempt - 1 && r.result == "fail" }.min_by(&:finish)
          next unless failed && retry_run.start < failed.finish + 1 - @tolerance

          @result.add(:early, "#{jid} retry #{retry_run.attempt} started #{(failed.finish + 1 - retry_run.start).round(3)} s " \
                              "before its backoff ended (pid #{retry_run.pid})")
        end
      end
    end

    # Each callback once, after the jobs it waits for.
    def check_batches
      members = @enqueued.values.select { |e| e.klass == "ChaosMember" }.group_by(&:key)
      callbacks = @runs.values.flatten.select { |r| r.klass == "ChaosCallback" }.group_by(&:tag)
      callbacks.each do |tag, runs|
        jids = runs.map(&:jid).uniq
        @result.add(:callback_twice, "#{tag}: #{jids.size} callbacks") if jids.size > 1
      end
      @batches.each_key do |bid|
        list = members[bid] || []
        succeeded = list.all? { |e| @runs[e.jid].any?(&:ok?) }
        %w[complete success].each do |event|
          runs = callbacks["#{bid}/#{event}"]
          if runs.nil?
            @result.add(:callback_missing, "#{bid}/#{event}: never ran") if event == "complete" || succeeded
            next
          end
          done = list.map { |e| @runs[e.jid].select { |r| event == "complete" || r.ok? }.map { |r| r.finish || ended(r) }.min }
          last = done.compact.max
          next unless last && runs.first.start < last - @tolerance

          @result.add(:callback_early, "#{bid}/#{event} ran at #{runs.first.start.round(2)}, before a job ended at #{last.round(2)}")
        end
      end
    end

    # An iterable job resumes from a cursor never behind one it resumed from before, and
    # processes every item; an item processed twice lies after the last checkpoint, and
    # a fault explains it.
    def check_iterables
      @enqueued.values.select { |e| e.klass == "ChaosIterable" }.each do |e|
        resumed = @resumes[e.jid].sort_by(&:last)
        resumes = resumed.map(&:first)
        if resumes.each_cons(2).any? { |a, b| b < a }
          # A checkpoint a failover forgot, or a job run again after it completed (its
          # ack lost: a duplicate) and deleted its checkpoint.
          fault = fault_for(@runs[e.jid].map(&:pid), resumed.first.last - 30, resumed.last.last, kinds: RERUN)
          @result.add(:cursor_back, "#{e.jid}: resumed from cursors #{resumes.inspect}", fault: fault)
        end
        items = @items[e.jid]
        missing = (0...ITEMS).to_a - items.map(&:first)
        @result.add(:items_missing, "#{e.jid}: items #{missing.first(5)} never processed") if missing.any? && @runs[e.jid].any?(&:ok?)
        items.group_by(&:first).each do |item, times|
          next if times.size < 2

          @result.counts[:items_redone] += 1
          # Items after the last checkpoint are processed again when a run ends early:
          # a failure (its retry resumes from the checkpoint), an interruption, a kill.
          next if @runs[e.jid].any? { |r| !r.ok? }

          fault = fault_for(@runs[e.jid].map(&:pid), times.map(&:last).min - 30, times.map(&:last).max)
          @result.add(:item_redone, "#{e.jid}: item #{item} processed #{times.size} times", fault: fault)
        end
      end
    end

    # Each cron tick runs once: one job per tick (a rerun of that job is a duplicate above).
    def check_cron
      ticks = @runs.values.flatten.select { |r| r.klass == "ChaosCron" }.group_by(&:tag)
      @result.counts[:cron_ticks] = ticks.size
      ticks.each do |tick, runs|
        jids = runs.map(&:jid).uniq
        next if jids.size < 2

        # A tick fired on a master that then lost it (asynchronous replication) is fired
        # again on the new one: cron fires do not wait for replicas.
        mono = tick.to_i - @offset
        fault = fault_for([], mono - 10, mono + 10, kinds: FORGET)
        @result.add(:cron_twice, "tick #{tick}: #{jids.size} jobs (#{runs.map(&:pid).uniq.join(", ")})", fault: fault)
      end
      # A tick between the first and the last that never ran: only while Redis could
      # not take it (down, full, failing over) may one be missed.
      seen = ticks.keys.map(&:to_i).sort
      return if seen.size < 2

      (seen.first..seen.last).step(CRON_EVERY).each do |tick|
        next if ticks.key?(tick.to_s)

        mono = tick - @offset
        fault = fault_for([], mono - 3, mono + 3, kinds: OUTAGE)
        @result.counts[:cron_missed] += 1
        @result.add(:cron_missed, "tick #{tick} (#{Time.at(tick).utc.strftime("%T")}, monotonic #{mono.round(2)}) never ran",
                    fault: fault)
      end
    end

    # processed/failed count each run once: between the runs whose outcome may not have
    # been recorded (those run again: their process died before the ack) and all of them.
    def check_counters
      all = @runs.values.flatten
      rerun = all.select { |r| @runs[r.jid].any? { |o| o.start > r.start && (o.attempt == r.attempt || r.ok?) } }
      { processed: "ok", failed: "fail" }.each do |counter, result|
        logged = all.count { |r| r.result == result }
        slack = rerun.count { |r| r.result == result }
        value = @totals[counter].to_i
        @result.counts[:"#{counter}_counter"] = value
        @result.counts[:"#{counter}_logged"] = logged
        next if value.between?(logged - slack, logged)

        # Counts a failover lost (asynchronous replication) make a counter lower, never higher.
        fault = value < logged - slack ? @faults.find { |f| FORGET.include?(f.kind) } : nil
        @result.add(:counter, "#{counter} is #{value}; the runs logged say #{logged - slack}..#{logged}", fault: fault)
      end
    end
  end
end
