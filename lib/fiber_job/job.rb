# frozen_string_literal: true

module FiberJob
  # A running job's batch (FiberJob::Batch): for FiberJob::Job and the Sidekiq job
  # classes of `fiber_job/sidekiq` alike. Needs `jid`.
  module BatchMember
    attr_writer :bid

    # The id of the batch this job belongs to, or nil (asked of the engine, which
    # parsed it with the payload: jobs outside batches pay nothing).
    def bid
      return @bid if defined?(@bid)

      worker = Worker.native
      @bid = worker && jid ? worker._batch_of(jid) : nil
    end

    # The batch this job belongs to, to add jobs to it (`batch.jobs { … }`), or nil.
    def batch
      id = bid
      id && Batch.new(id)
    end
  end

  # Base class of every job. Subclasses define `perform` and may set defaults in
  # `initialize` (call `super` first), exactly as the README shows:
  #
  #   class ComplexJob < FiberJob::Job
  #     def initialize
  #       super
  #       @queue = :high_priority
  #       @max_retries = 5
  #       @timeout = 600
  #     end
  #   end
  class Job
    # Retries after the first failure before a job goes to the dead set.
    DEFAULT_MAX_RETRIES = 3
    # Seconds a job may run before it is interrupted with FiberJob::TimeoutError.
    DEFAULT_TIMEOUT = 300

    attr_accessor :queue, :max_retries, :timeout, :jid, :retry_count
    # Seconds after which a job not yet started is not run (nil: never); see
    # `Job.expires_in`. Seconds a unique job's lock lives (nil: not unique), and when
    # it is freed (:success or :start); see `Job.unique_for`. Each defaults to its
    # class's setting, read only when asked: a worker makes a job object per run.
    attr_writer :expires_in, :unique_for, :unique_until
    # Limits per key ({ to:, key:, lease:, group: } and { limit:, per:, key:, group: }),
    # defaulting to the class's; see `Job.limits_concurrency` and `Job.throttle`.
    attr_writer :limits_concurrency, :throttle

    include BatchMember

    def expires_in = defined?(@expires_in) ? @expires_in : class_setting(:@default_expires_in)

    def unique_for = defined?(@unique_for) ? @unique_for : class_setting(:@default_unique, [nil, nil])[0]

    def unique_until = defined?(@unique_until) ? @unique_until : class_setting(:@default_unique, [nil, nil])[1]

    def limits_concurrency = defined?(@limits_concurrency) ? @limits_concurrency : class_setting(:@limits_concurrency)

    def throttle = defined?(@throttle) ? @throttle : class_setting(:@throttle)

    def initialize
      @queue = :default
      @max_retries = DEFAULT_MAX_RETRIES
      @timeout = DEFAULT_TIMEOUT
      @jid = nil
      @retry_count = 0
    end

    # The work. Receives exactly the arguments given to perform_async.
    def perform(*_args)
      raise NotImplementedError, "#{self.class} must define #perform"
    end

    # Seconds before retry number `attempt` (1, 2, …): exponential backoff with jitter,
    # attempt**4 + 15 + rand(10 * attempt) (Sidekiq's curve: 16 s, 31 s, 96 s, 271 s, …).
    def retry_delay(attempt)
      (attempt**4) + 15 + rand(10 * attempt)
    end

    # True sends a due retry to the front of its queue instead of the back.
    def priority_retry?
      false
    end

    private

    def class_setting(ivar, fallback = nil) = Internal::JobSettings.inherited(self.class, ivar, fallback)

    public

    class << self
      # Enqueues the job to run now. @return [String] the job id
      def perform_async(*args)
        Internal::Enqueue.push(self, args)
      end

      # Runs the job `interval` seconds from now (Numeric or an ActiveSupport::Duration).
      # @return [String] the job id
      def perform_in(interval, *args)
        unless interval.is_a?(Numeric) || (interval.respond_to?(:to_f) && !interval.is_a?(String))
          raise ArgumentError, "#{name}.perform_in takes seconds (Numeric or a Duration) first, got #{interval.inspect}"
        end

        Internal::Enqueue.schedule(self, Time.now.to_f + interval.to_f, args)
      end

      # Runs the job at `time`: a Time, Date, DateTime, or epoch seconds.
      # @return [String] the job id
      def perform_at(time, *args)
        Internal::Enqueue.schedule(self, epoch_seconds(time), args)
      end

      # Enqueues one job per argument list in one round trip. @return [Array<String>]
      def perform_bulk(args_list)
        Internal::Enqueue.push_bulk(self, args_list)
      end

      # The queue this class's jobs go to (its `@queue` default), as a String.
      def queue_name
        @queue_name ||= new.queue.to_s
      end

      # A job of this class not started within `seconds` (Numeric or a Duration) of
      # when it was due — its enqueue, or its perform_in/perform_at time — is not run:
      # the worker that takes it later counts it (`Queue.metrics[:expired]`), logs it
      # and puts it in the dead set as `FiberJob::Expired`, where it can still be seen
      # or retried by hand. The deadline holds for every start, retries included.
      def expires_in(seconds)
        @default_expires_in = Internal::JobSettings.positive_seconds!("#{name}.expires_in", seconds)
      end

      # Enqueues a job of this class only if no job with the same class, queue and
      # arguments (or `unique_by` key) was enqueued in the last `seconds` and is still
      # pending: `perform_async` and friends return nil for a duplicate and enqueue
      # nothing. The lock is freed when the job succeeds or dies (`until: :success`) or
      # when it starts (`until: :start`), and after `seconds` at the latest.
      def unique_for(seconds, **options)
        unknown = options.keys - [:until]
        raise ArgumentError, "#{name}.unique_for takes until: only, got #{unknown.inspect}" unless unknown.empty?

        till = options.fetch(:until, :success)
        unless %i[success start].include?(till)
          raise ArgumentError, "#{name}.unique_for until: is :success or :start, got #{till.inspect}"
        end

        @default_unique = [Internal::JobSettings.positive_seconds!("#{name}.unique_for", seconds), till]
      end

      # true: this class's enqueues inside an ActiveRecord transaction wait for its
      # commit (and are dropped on rollback); false: never; overrides
      # `config.enqueue_after_commit` (FiberJob::AfterCommit).
      def enqueue_after_commit(on)
        raise ArgumentError, "#{name}.enqueue_after_commit takes true or false, got #{on.inspect}" unless [true, false].include?(on)

        Internal::AfterCommit.used = true if on
        @enqueue_after_commit = on
      end

      # What makes two jobs of this class the same: the block gets the arguments and
      # returns a JSON-able key (default: the arguments themselves).
      def unique_by(&block)
        raise ArgumentError, "#{name}.unique_by takes a block, e.g. unique_by { |user_id, *| user_id }" unless block

        @unique_by = block
      end

      # At most `to` jobs of this class with the same key run at once, across every
      # process. `key` gets the job's arguments (default: one key for the class); keys
      # are per class unless `group` names a scope several classes share. A job over
      # the limit waits in Redis, not in a worker, and starts when a slot of its key
      # frees, in order. A slot is held from the job's start until it succeeds, fails
      # or dies; its worker renews it every second, so `lease` (seconds, at least 2)
      # is how long a slot outlives a lost worker (killed with -9) at most. Also
      # settable in `initialize`:
      #   @limits_concurrency = { to: 2, key: ->(account_id, *) { account_id }, lease: 600 }
      def limits_concurrency(to:, key: nil, lease: Internal::Limits::DEFAULT_LEASE, group: nil)
        @limits_concurrency = { to: to, key: key, lease: lease, group: group }
      end

      # At most `limit` jobs of this class with the same key start in any `per` seconds
      # (a sliding window). `key` and `group` as for `limits_concurrency`. Jobs over the
      # rate wait in Redis and start, in order, when the window has room. Also settable
      # in `initialize`:
      #   @throttle = { limit: 100, per: 60, key: ->(user_id, *) { "stripe-#{user_id}" } }
      def throttle(limit, per:, key: nil, group: nil)
        @throttle = { limit: limit, per: per, key: key, group: group }
      end

      private

      def epoch_seconds(time)
        case time
        when Numeric then time.to_f
        when Time then time.to_f
        else
          return time.to_time.to_f if time.respond_to?(:to_time)

          raise ArgumentError, "#{name}.perform_at takes a Time, Date, DateTime or epoch seconds, got #{time.inspect}"
        end
      end
    end
  end
end
