# frozen_string_literal: true

module FiberJob
  # A job over many items that resumes where it stopped — after a retry, a deploy
  # (TERM), or a crash (kill -9) — instead of starting over:
  #
  #   class BackfillJob < FiberJob::IterableJob
  #     def build_enumerator(account_id, cursor:)
  #       enumerator_for_array(Account.find(account_id).order_ids, cursor: cursor)
  #     end
  #
  #     def each_iteration(order_id, account_id)
  #       Order.find(order_id).backfill!
  #     end
  #   end
  #
  # `build_enumerator` gets the job's arguments and `cursor:` — nil on the first run,
  # else the cursor of the last item processed — and returns an Enumerator of
  # [item, cursor] pairs that starts *after* that cursor. `each_iteration` gets each
  # item and the arguments. The cursor must be JSON (a number, a String, an Array of
  # them...). The engine keeps the checkpoint in Redis (cursor, iterations, seconds
  # run), written every `checkpoint_every` iterations or seconds, whichever comes
  # first, and when the job stops early; so a crash repeats at most one checkpoint
  # interval of items.
  class IterableJob < Job
    # Checkpoint after this many iterations…
    DEFAULT_CHECKPOINT_ITERATIONS = 100
    # …or this many seconds, whichever comes first.
    DEFAULT_CHECKPOINT_SECONDS = 5.0
    # How long a checkpoint is kept after its last write.
    CHECKPOINT_TTL = 30 * 86_400

    class << self
      # How often the cursor is saved: every `iterations` items or `seconds`, whichever
      # comes first. Smaller repeats fewer items after a crash and costs a round trip
      # per checkpoint.
      def checkpoint_every(iterations: DEFAULT_CHECKPOINT_ITERATIONS, seconds: DEFAULT_CHECKPOINT_SECONDS)
        unless iterations.is_a?(Integer) && iterations.positive?
          raise ArgumentError, "#{name}.checkpoint_every iterations: takes a positive Integer, got #{iterations.inspect}"
        end

        @checkpoint_every = [iterations, Internal::JobSettings.positive_seconds!("#{name}.checkpoint_every seconds:", seconds)]
      end

      # After this many seconds in one run the job saves its cursor and goes to the back
      # of its queue, so one job does not hold a worker slot forever (nil: no limit).
      def max_iteration_runtime(seconds)
        @max_iteration_runtime = Internal::JobSettings.positive_seconds!("#{name}.max_iteration_runtime", seconds)
      end

      # Cancels a running or waiting iterable job of this class: it stops at its next
      # checkpoint (or start) and succeeds without the rest of its items.
      # @return [void]
      def cancel(jid)
        Internal.checkpoints._write(queue_name, jid.to_s, [%w[cancelled 1]], CHECKPOINT_TTL)
        nil
      end

      # The saved progress of one job of this class: { cursor:, iterations:, runtime:,
      # cancelled: } or nil when it has none (not started, or finished).
      def progress(jid, queue: queue_name)
        IterableJob.progress_of(queue, jid)
      end
    end

    # The saved progress of job `jid` of `queue` (see `.progress`), whatever its class.
    def self.progress_of(queue, jid)
      pairs = Internal.checkpoints._read(queue.to_s, jid.to_s).to_h
      return nil if pairs.empty?

      { cursor: pairs["cursor"] && JSON.parse(pairs["cursor"]), iterations: pairs["iterations"].to_i,
        runtime: pairs["runtime"].to_f, cancelled: pairs.key?("cancelled") }
    end

    # The cursor of the last item processed (nil before the first).
    attr_reader :cursor
    # Items processed, over every run of this job.
    attr_reader :iterations

    def build_enumerator(*_args, cursor:)
      raise NotImplementedError, "#{self.class} must define build_enumerator(*args, cursor:)"
    end

    def each_iteration(_item, *_args)
      raise NotImplementedError, "#{self.class} must define each_iteration(item, *args)"
    end

    # Called once, after the last item (not when cancelled).
    def on_complete(*_args); end

    # Stops the job after the current item; it succeeds without the rest.
    def cancel!
      @cancelled = true
    end

    def cancelled? = @cancelled == true

    # Items of an Array from the one after `cursor` (an index); the cursor is the index.
    def enumerator_for_array(array, cursor:)
      start = cursor.nil? ? 0 : cursor + 1
      Enumerator.new { |y| (start...array.size).each { |i| y.yield(array[i], i) } }
    end

    # Numbers of a Range (or `from..to`) after `cursor`; each number is its own cursor.
    def enumerator_for_range(range, cursor:)
      first = cursor.nil? ? range.begin : cursor + 1
      rest = range.exclude_end? ? (first...range.end) : (first..range.end)
      Enumerator.new { |y| rest.each { |n| y.yield(n, n) } }
    end

    def perform(*args)
      resume
      return finish if @cancelled

      started = clock
      each_item(args, started)
      return finish if @cancelled

      on_complete(*args)
      finish
    rescue Requeue
      raise
    rescue Exception # rubocop:disable Lint/RescueException -- a failure or an interruption: save where it got to
      save(started) if started
      raise
    end

    private

    def each_item(args, started)
      every, seconds = Internal::JobSettings.inherited(self.class, :@checkpoint_every,
                                                       [DEFAULT_CHECKPOINT_ITERATIONS, DEFAULT_CHECKPOINT_SECONDS])
      limit = Internal::JobSettings.inherited(self.class, :@max_iteration_runtime, nil)
      since, saved_at = 0, clock
      enumerator = build_enumerator(*args, cursor: @cursor)
      raise ArgumentError, "#{self.class}#build_enumerator must return an Enumerator, got #{enumerator.class}" unless enumerator.respond_to?(:each)

      enumerator.each do |item, cursor|
        each_iteration(item, *args)
        @cursor = cursor
        @iterations += 1
        since += 1
        break if @cancelled

        now = clock
        if stopping? || (limit && now - started >= limit)
          save(started)
          raise Requeue.new(front: stopping?), "#{self.class} jid=#{jid}: saved at cursor #{@cursor.inspect}"
        end
        next unless since >= every || now - saved_at >= seconds

        @cancelled = true if save(started)
        since, saved_at = 0, now
        break if @cancelled
      end
    end

    # Reads the checkpoint (a retry, a requeue or a recovery resumes from it).
    def resume
      state = IterableJob.progress_of(queue_name, jid) || {}
      @cursor = state[:cursor]
      @iterations = state[:iterations] || 0
      @runtime = state[:runtime] || 0.0
      @cancelled = state[:cancelled] || false
    end

    # Saves the cursor; true when the job was cancelled from outside meanwhile.
    def save(started)
      runtime = @runtime + (clock - started)
      Internal.checkpoints._write(queue_name, jid, [["cursor", JSON.generate(@cursor)], ["iterations", @iterations.to_s],
                                                    ["runtime", runtime.round(3).to_s]], CHECKPOINT_TTL)
    end

    def finish
      Internal.checkpoints._delete(queue_name, jid)
      nil
    end

    # The queue the job runs on (it may have been enqueued to another than its class's).
    def queue_name
      context = Logging.context
      (context && context["queue"]) || queue.to_s
    end

    # Whether the worker running this job is stopping (TERM, a deploy).
    def stopping?
      worker = Worker.native
      worker ? worker._stopping? : false
    end

    def clock = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end
end
