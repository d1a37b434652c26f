# frozen_string_literal: true

module FiberJob
  module Internal
    # Hands jobs to the Rust client. Payloads use Sidekiq's field names (class, args,
    # jid, queue, created_at, enqueued_at, retry_count) and are built in one place, the
    # engine's payload builder: the fast path calls it from Rust, the Ruby path through
    # `Native.payload`.
    #
    # Every enqueue passes one choke point, `deliver`: client middleware runs there,
    # :enqueue events are emitted there, and test mode (`FiberJob::Testing`) takes the
    # payloads there instead of Redis. When none of those is in use, `_enqueue` writes
    # the payloads in Rust straight from the arguments (the fast path).
    module Enqueue
      class << self
        # Where payloads go instead of Redis (set by FiberJob::Testing).
        attr_accessor :sink

        # Enqueues one job now. `job_class` is a job class or a class name.
        # @return [String, nil] the job id (nil if middleware stopped it)
        def push(job_class, args, queue: job_class_queue(job_class), extra: nil)
          extra = expiring(job_class, extra, Time.now.to_f)
          if extra.nil? && plain? && !flow?(job_class)
            fast = Internal.enqueue._enqueue(class_name(job_class), queue.to_s, [args])
            return fast.first if fast
          end
          deliver(job_class, [build(job_class, args, queue, extra)], nil).first
        end

        # Enqueues many jobs of one class in one round trip. @return [Array<String>] job ids
        def push_bulk(job_class, args_list, queue: job_class.queue_name)
          unless args_list.is_a?(Array) && args_list.all?(Array)
            raise ArgumentError, "#{job_class}.perform_bulk takes an Array of argument Arrays, e.g. [[1, \"a\"], [2, \"b\"]]"
          end

          extra = expiring(job_class, nil, Time.now.to_f)
          if extra.nil? && plain? && !flow?(job_class)
            fast = Internal.enqueue._enqueue(class_name(job_class), queue.to_s, args_list)
            return fast if fast
          end
          deliver(job_class, args_list.map { |args| build(job_class, args, queue, extra) }, nil)
        end

        # Stores a job to run at `at` (epoch seconds); a time not in the future runs now.
        # @return [String, nil] the job id
        def schedule(job_class, at, args, queue: job_class.queue_name, extra: nil)
          now = Time.now.to_f
          future = at > now
          payload = build(job_class, args, queue, expiring(job_class, extra, future ? at : now))
          payload["at"] = at if future
          deliver(job_class, [payload], future ? at : nil).first
        end

        # Enqueues many jobs of one class in few round trips: one per queue for those
        # due now, one per queue for scheduled ones (ActiveJob's `perform_all_later`).
        # `entries`: [[args, queue, extra, at], …], `at` in epoch seconds or nil for now.
        # Arguments are checked before anything is written. A group whose write fails
        # does not stop the others: its entries carry the error.
        # @return [Array<Array(String, nil), Array(nil, Exception)>] per entry, its jid
        #   (nil when middleware stopped it or it duplicates a pending unique job) and the
        #   error that kept it out of Redis
        def push_many(job_class, entries)
          now = Time.now.to_f
          payloads = entries.map do |args, queue, extra, at|
            future = at && at > now
            payload = build(job_class, args, queue, expiring(job_class, extra, future ? at : now))
            payload["at"] = at if future
            payload
          end
          results = Array.new(payloads.size)
          payloads.each_index.group_by { |i| [payloads[i].key?("at"), payloads[i].key?("unique_key")] }
                  .each do |(scheduled, _), indexes|
            group = indexes.map { |i| payloads[i] }
            begin
              jids = deliver(job_class, group, scheduled ? group.map { |p| p["at"] }.min : nil)
              indexes.zip(jids).each { |i, jid| results[i] = [jid, nil] }
            rescue FiberJob::Error => e
              indexes.each { |i| results[i] = [nil, e] }
            end
          end
          results
        end

        # A callback's payload (FiberJob::Batch): `args_json` is the JSON of its
        # arguments; the class's limits per key apply to it.
        def payload_json(job_class, queue, args_json)
          limits = JobSettings.limit_fields(job_class, [])
          Native.payload(job_class.name, queue.to_s, args_json, limits ? JSON.generate(limits) : nil)
        end

        private

        # Runs client middleware over each payload, then writes the survivors (to Redis,
        # or to the test sink). @return [Array<String, nil>] jids, nil where stopped
        def deliver(job_class, payloads, at)
          chain = FiberJob.config.client_middleware
          kept = chain.empty? ? payloads : payloads.map { |p| through(chain, job_class, p) }
          ready = kept.compact
          duplicates = ready.empty? ? [] : write(job_class, ready, at)
          kept.map { |p| p && !duplicates.include?(p["jid"]) ? p["jid"] : nil }
        end

        def through(chain, job_class, payload)
          ran, = chain.invoke(job_class, payload, payload["queue"]) { payload }
          return nil unless ran

          Arguments.check!("#{payload["class"]} (after client middleware)", payload["args"])
          payload
        end

        # @return [Array<String>] jids of unique jobs not enqueued (duplicates)
        def write(job_class, payloads, at)
          if AfterCommit.defer?(job_class)
            AfterCommit.later { write_now(job_class, payloads, at) }
            return []
          end
          write_now(job_class, payloads, at)
        end

        def write_now(job_class, payloads, at)
          started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
          duplicates = []
          open = Thread.current[:fiber_job_batch] unless sink
          if open
            duplicates = open.write(payloads, at)
          elsif sink
            sink.receive(job_class, payloads, at)
          else
            duplicates = write_payloads(payloads, at)
          end
          announce(job_class, payloads, started, duplicates) if Instrumentation.listening?(:enqueue)
          duplicates
        end

        public

        # Writes built payloads to Redis, a round trip per queue. `at`: nil for jobs due
        # now; for scheduled ones, the time of those without their own "at".
        # @return [Array<String>] jids of unique jobs not enqueued (duplicates)
        def write_payloads(payloads, at)
          return write_unique(payloads, at) if payloads.first["unique_key"]

          payloads.group_by { |p| p["queue"].to_s }.each do |queue, group|
            if at
              Internal.enqueue._schedule(queue, group.map { |p| [p.fetch("at", at).to_f, JSON.generate(p)] })
            else
              Internal.enqueue._push(queue, group.map { |p| JSON.generate(p) })
            end
          end
          []
        end

        private

        # Each payload only if it takes its lock (one script per queue). @return the
        # jids that did not: duplicates.
        def write_unique(payloads, at)
          payloads.group_by { |p| [p["queue"].to_s, at && p.fetch("at", at).to_f] }.flat_map do |(queue, due), group|
            jobs = group.map { |p| [p["unique_key"], p["jid"], (p["unique_for"] * 1000).ceil, JSON.generate(p)] }
            taken = Internal.enqueue._push_unique(queue, due, jobs)
            group.zip(taken).reject { |_, ok| ok }.map { |p, _| p["jid"] }
          end
        end

        def announce(job_class, payloads, started, duplicates)
          duration = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
          payloads.each do |p|
            Instrumentation.emit(:enqueue, job_class: job_class, jid: p["jid"], queue: p["queue"], args: p["args"],
                                           duration: duration, skipped: duplicates.include?(p["jid"]))
          end
        end

        # True when nothing needs the payloads in Ruby: the Rust fast path may write them.
        def plain?
          sink.nil? && FiberJob.config.client_middleware.empty? && !Instrumentation.listening?(:enqueue) &&
            Thread.current[:fiber_job_batch].nil? && !AfterCommit.used
        end

        # Checks the arguments (raising the ArgumentError that names the bad one), then
        # has the engine's builder make the payload, as a Hash middleware can change.
        def build(job_class, args, queue, extra)
          name = class_name(job_class)
          Arguments.check!("#{name}.perform_async", args)
          extra = unique_fields(job_class, queue, args, extra)
          limits = JobSettings.limit_fields(job_class, args)
          extra = (extra || {}).merge(limits) if limits
          open = Thread.current[:fiber_job_batch]
          extra = (extra || {}).merge("bid" => open.bid) if open
          json = Native.payload(name, queue.to_s, JSON.generate(args), extra && JSON.generate(extra))
          JSON.parse(json)
        end

        # True for a class whose payloads carry flow control fields (unique, limits).
        def flow?(job_class)
          JobSettings.uniqueness(job_class) || JobSettings.limits(job_class)
        end

        # `extra` with the lock's digest, lifetime and release point of a unique job.
        def unique_fields(job_class, queue, args, extra)
          seconds, till = JobSettings.uniqueness(job_class)
          return extra unless seconds

          (extra || {}).merge("unique_key" => JobSettings.unique_digest(job_class, queue, args), "unique_for" => seconds,
                              "unique_until" => till.to_s)
        end

        # `extra` with the job's deadline (`expires_at`) when its class has `expires_in`.
        def expiring(job_class, extra, due)
          seconds = JobSettings.expiry(job_class)
          return extra unless seconds

          (extra || {}).merge("expires_at" => due + seconds)
        end

        def class_name(job_class)
          return job_class if job_class.is_a?(String)

          name = job_class.name
          raise ArgumentError, "#{job_class.inspect} has no name; define job classes with a constant name" if name.nil?

          name
        end

        def job_class_queue(job_class)
          job_class.is_a?(String) ? "default" : job_class.queue_name
        end
      end
    end
  end
end
