# frozen_string_literal: true

module FiberJob
  # A group of jobs with callbacks that run once when they are all done:
  #
  #   batch = FiberJob::Batch.new(description: "Import 2026-12")
  #   batch.on(:success, ImportDoneJob, "import_id" => 42)  # every job succeeded
  #   batch.on(:complete, ImportReportJob)                  # every job ran at least once
  #   batch.on(:death, ImportAlertJob)                      # a job went to the dead set
  #   batch.jobs { rows.each { |r| ImportRowJob.perform_async(r) } }
  #
  # Every enqueue inside `jobs { }` on this thread or fiber (perform_async,
  # perform_bulk, perform_in/at) joins the batch: its jid is recorded in Redis before
  # the job is pushed, and forgotten if the push fails. The batch is not complete while
  # a `jobs` block of it runs. A job of the batch may reopen it (`batch.jobs { }` on
  # `Batch.new(bid)` or the job's `batch`) to add jobs: it is itself pending meanwhile.
  #
  # Callbacks are ordinary jobs, enqueued exactly once per event however many
  # processes finish jobs at the same instant: `perform(status, options)`, where status
  # is a Hash ("bid", "event", "description", "total", "pending", "failures", "dead",
  # "created_at") taken when the event fired. The batch's keys live 30 days after its
  # last change. See docs/ARCHITECTURE.md "Batches" for how.
  class Batch
    EVENTS = %i[success complete death].freeze
    # What a bid may be (they name Redis keys).
    BID = /\A[0-9A-Za-z_-]{1,64}\z/.freeze

    attr_reader :bid, :description

    # A `jobs { }` block running on this fiber or thread: where its enqueues go.
    # Jobs to enqueue now wait in a buffer and go to Redis together — a thousand at a
    # time, after a second, before any other enqueue of the block, and at its end — so
    # a block of single `perform_async` calls costs about what `perform_bulk` does.
    # Each group is recorded in the batch (`_batch_add`) before it is pushed, and
    # forgotten (`_batch_undo`) when the push raised or found unique duplicates.
    # @api private
    class Open
      FLUSH_SIZE = 1000
      FLUSH_AFTER = 1.0

      attr_reader :bid

      def initialize(bid, token)
        @bid = bid
        @token = token
        @buffer = []
        @since = nil
      end

      # Client.write's batch path. @return [Array<String>] duplicates' jids
      def write(payloads, at)
        if at.nil? && !payloads.first["unique_key"]
          @since ||= Process.clock_gettime(Process::CLOCK_MONOTONIC)
          @buffer.concat(payloads)
          flush if @buffer.size >= FLUSH_SIZE || Process.clock_gettime(Process::CLOCK_MONOTONIC) - @since >= FLUSH_AFTER
          return []
        end
        flush
        record(payloads, at)
      end

      # Pushes the buffered jobs.
      def flush
        return if @buffer.empty?

        payloads = @buffer
        @buffer = []
        @since = nil
        record(payloads, nil)
      end

      private

      def record(payloads, at)
        members = payloads.select { |p| p["bid"] == bid }.map { |p| [p["jid"], p["class"].to_s] }
        Internal.batches._add(bid, @token, members) unless members.empty?
        begin
          duplicates = Internal::Enqueue.write_payloads(payloads, at)
        rescue Exception # rubocop:disable Lint/RescueException
          forget(members)
          raise
        end
        forget(members.select { |jid, _| duplicates.include?(jid) })
        duplicates
      end

      def forget(members)
        Internal.batches._undo(bid, members) unless members.empty?
      rescue Error => e
        FiberJob.logger.error("batch #{bid}: could not forget #{members.size} job(s) that were not enqueued " \
                              "(#{e.message}); the batch waits for them until they are removed by hand")
      end
    end

    class << self
      # The batch's state, or nil for a bid FiberJob does not know (never made, or
      # expired): { bid:, description:, total:, pending:, failures:, dead:, open:,
      # complete:, success:, death:, created_at:, complete_at:, success_at:, death_at: }.
      # `pending` counts jobs not yet succeeded, `failures` those of them that failed
      # at least once, `dead` those in the dead set, `open` the `jobs` blocks running.
      def status(bid)
        check_bid!(bid)
        fields = Internal.batches._status(bid)
        fields && summary(fields)
      end

      # The batch's members `offset…offset + limit`, newest first, each
      # { jid:, class:, state: } with state "pending", "failed", "dead" or "succeeded".
      def jobs(bid, offset: 0, limit: 50)
        check_bid!(bid)
        Internal.batches._jobs(bid, offset, offset + limit - 1).map do |jid, klass, state|
          { jid: jid, class: klass, state: state }
        end
      end

      # Batches, newest first: [[status, …], number of batches] (two round trips).
      def list(offset: 0, limit: 25)
        fields, total = Internal.batches._list(offset, offset + limit - 1)
        [fields.map { |f| summary(f) }, total]
      end

      # @api private
      def check_bid!(bid)
        return if bid.is_a?(String) && bid.match?(BID)

        raise ArgumentError, "a batch id is 1 to 64 letters, digits, '_' or '-', got #{bid.inspect}"
      end

      private

      def summary(f)
        times = %w[created_at complete_at success_at death_at].to_h { |k| [k.to_sym, f[k]&.to_f] }
        counts = %w[total pending failures dead open].to_h { |k| [k.to_sym, f[k].to_i] }
        { bid: f["bid"], description: f["description"].to_s, **counts,
          complete: !times[:complete_at].nil?, success: !times[:success_at].nil?, death: !times[:death_at].nil?,
          **times }
      end
    end

    # `Batch.new(description: "…")` makes a new batch (its id is made now; it is
    # written to Redis by its first `jobs`). `expires_in:` (seconds or a Duration;
    # default 30 days): how long it is kept after its last change. `Batch.new(bid)` is
    # an existing batch, to add jobs to from one of its jobs (its callbacks and expiry
    # are those it was made with).
    def initialize(bid = nil, description: nil, expires_in: nil)
      unless description.nil? || description.is_a?(String)
        raise ArgumentError, "Batch.new description: takes a String, got #{description.inspect}"
      end

      if bid
        Batch.check_bid!(bid)
        if description || expires_in
          raise ArgumentError, "Batch.new(bid) reopens a batch; its description and expiry were set when it was made"
        end
      end
      @expires_in = expires_in && Internal::JobSettings.positive_seconds!("Batch.new expires_in:", expires_in).ceil
      @bid = bid || SecureRandom.hex(12)
      @existing = !bid.nil?
      @description = description.to_s
      @callbacks = []
      @made = false
    end

    # Runs `job_class` (a FiberJob::Job subclass) with (status, options) once when
    # `event` happens: :success (every job succeeded), :complete (every job ran at
    # least once; some may still be retrying), :death (the first job went to the dead
    # set). `options`: a JSON-able Hash. Set callbacks before the first `jobs`.
    def on(event, job_class, options = {})
      unless EVENTS.include?(event.to_s.to_sym)
        raise ArgumentError, "Batch#on takes an event of #{EVENTS.map(&:inspect).join(", ")}, got #{event.inspect}"
      end
      unless job_class.is_a?(Class) && job_class < FiberJob::Job
        raise ArgumentError, "Batch#on takes a FiberJob::Job subclass to run, got #{job_class.inspect}"
      end
      raise ArgumentError, "Batch#on options are a Hash, got #{options.inspect}" unless options.is_a?(Hash)
      if @existing || @made
        raise ArgumentError, "batch #{bid}: callbacks are set before its first `jobs` block (it is already made)"
      end

      Internal::Arguments.check!("#{job_class}, a callback of batch #{bid}", [options])
      @callbacks << [event.to_s.to_sym, job_class, options]
      self
    end

    # Runs the block; every job it enqueues on this fiber or thread joins the batch.
    # Jobs to run now are pushed in groups (see Open): all of them by the time `jobs`
    # returns. The batch cannot complete while the block runs; at its end, callbacks
    # whose event already happened (all jobs done, or none added) are enqueued. If the
    # block raises, the jobs it enqueued stay in the batch and the error goes on.
    # @return [self]
    def jobs
      raise ArgumentError, "Batch#jobs takes a block that enqueues the batch's jobs" unless block_given?

      return within(Open.new(bid, nil)) { yield self } if Internal::Enqueue.sink # test mode: no Redis

      token = SecureRandom.hex(8)
      opened = Internal.batches._open(bid, token, description, @existing || @made ? nil : callback_fields)
      refuse(opened) unless opened == "ok"
      @made = true
      open = Open.new(bid, token)
      begin
        within(open) { yield self }
      ensure
        begin
          open.flush
        ensure
          Internal.batches._close(bid, token)
        end
      end
      self
    end

    # The batch's state (see Batch.status).
    def status
      Batch.status(bid)
    end

    private

    def within(open)
      outer = Thread.current[:fiber_job_batch]
      Thread.current[:fiber_job_batch] = open
      yield
    ensure
      Thread.current[:fiber_job_batch] = outer
    end

    def refuse(answer)
      raise Error, case answer
                   when "unknown" then "batch #{bid} is unknown (never made, or expired); no jobs were added"
                   when "succeeded" then "batch #{bid} already succeeded and ran its callbacks; make a new batch"
                   else "batch id #{bid} is taken by another batch; use Batch.new(bid) to add to it"
                   end
    end

    # [[`cb:<event>`, JSON of [[queue, jid, payload template, marker], …]], …] (and
    # ["ttl", seconds] with `expires_in:`) and the callbacks' queues. The template's first argument is the marker, a JSON string
    # Redis replaces with the batch's status when the event fires.
    def callback_fields
      by_event = @callbacks.group_by(&:first).map do |event, callbacks|
        entries = callbacks.map do |_, job_class, options|
          marker = JSON.generate("fiber_job:batch-status:#{SecureRandom.hex(8)}")
          queue = job_class.queue_name
          json = Internal::Enqueue.payload_json(job_class, queue, "[#{marker},#{JSON.generate(options)}]")
          [queue, JSON.parse(json)["jid"], json, marker]
        end
        ["cb:#{event}", JSON.generate(entries)]
      end
      by_event << ["ttl", @expires_in.to_s] if @expires_in
      [by_event, @callbacks.map { |_, job_class, _| job_class.queue_name }.uniq]
    end
  end
end
