# frozen_string_literal: true

module FiberJob
  # Read access to queues and failures, for people and dashboards. Everything goes
  # through the engine (`Internal.admin`, `.jobs`, `.dead_set`, `.flow`, `.cron`:
  # src/client/).
  module Queue
    module_function

    # @return [Hash] size: ready jobs, scheduled: scheduled jobs and pending retries,
    #   processing: jobs running now (from the workers' heartbeats, within ~50 ms of a change;
    #   prefetched jobs waiting for a slot are not counted: see `metrics`' held)
    def stats(queue)
      m = metrics([queue_string(queue)]).values.first
      { size: m[:size], scheduled: m[:scheduled] + m[:retries], processing: m[:processing] }
    end

    # Failure records, newest first: 'class', 'args', 'jid', 'queue', 'error',
    # 'error_class', 'error_message', 'backtrace', 'failed_at', 'retry_count'.
    # @return [Array<Hash>]
    def failed_jobs(limit: 100, offset: 0)
      Internal.dead_set._failed(offset, offset + limit - 1).map { |json| JSON.parse(json) }
    end

    # Jobs that will not run again (retries exhausted, or unrunnable), newest first;
    # the failure fields plus 'died_at'. Each queue keeps its 10,000 newest of the last
    # 180 days (the dead set is per queue, under the queue's hash tag).
    # @return [Array<Hash>]
    def dead_jobs(limit: 100, offset: 0)
      Internal.dead_set._dead(offset, offset + limit - 1).map { |json| JSON.parse(json) }
    end

    # Puts a dead job back on its queue with its retry count reset.
    # @return [Boolean] whether a job with that jid was found and moved
    def retry_dead(jid)
      Internal.dead_set._retry(jid_string(jid)).positive?
    end

    # Deletes a dead job. @return [Boolean] whether it was there
    def delete_dead(jid)
      Internal.dead_set._delete(jid_string(jid)).positive?
    end

    # Puts every dead job back on its queue (each queue keeps its 10,000 newest of
    # the last 180 days: Native::DEAD_CAP, Native::DEAD_MAX_AGE_DAYS). @return [Integer] how many moved
    def retry_all_dead
      Internal.dead_set._retry(nil)
    end

    # Empties the dead set. @return [Integer] how many were deleted
    def clear_dead_jobs
      Internal.dead_set._delete(nil)
    end

    # Cron jobs with their expression, queue, next run and last run: the ones loaded
    # in this process and the ones workers registered in Redis (so a dashboard that
    # does not load the app lists them too). A last run Redis holds in a form FiberJob
    # did not write is nil, with the reason in :last_run_error. @return [Array<Hash>]
    def cron_jobs
      pairs, unreadable = Internal.cron._last
      last = pairs.to_h
      defs = Internal.cron._defs.to_h { |name, json| [name, parse_cron(json)] }
      CronJob.all.each { |job| defs[job.name] = { "cron" => job.cron, "queue" => job.queue_name } }
      utc = FiberJob.config.cron_time_zone == :utc
      defs.sort.filter_map do |name, d|
        next unless d["cron"].is_a?(String)

        tick, tick_error = last_tick(last[name], unreadable)
        next_run = begin
          Time.at(Internal::Native.cron_next(d["cron"], d.fetch("time_zone", utc ? "utc" : "local") == "utc", Time.now.to_f))
        rescue FiberJob::InvalidCronError
          nil
        end
        { class: name, cron: d["cron"], queue: d["queue"].to_s, next_run: next_run, last_run: tick && Time.at(tick),
          last_run_error: tick_error }
      end
    end

    # [epoch seconds or nil, why the stored value is unusable or nil]
    def last_tick(value, unreadable)
      return [nil, unreadable] if unreadable
      return [nil, nil] if value.nil?

      tick = Integer(value, 10, exception: false)
      tick ? [tick, nil] : [nil, "not an epoch time: #{value[0, 40].inspect}"]
    end

    # Enqueues a cron job now, outside its schedule, by its registered name, through
    # the same path as every enqueue (client middleware and :enqueue events included).
    # No class is loaded from the name here; the worker resolves it as for any job.
    # @return [String] the jid
    def enqueue_cron(name)
      job = cron_jobs.find { |j| j[:class] == name.to_s }
      raise ArgumentError, "no cron job named #{name.inspect} is registered" unless job

      Internal::Enqueue.push(job[:class], [], queue: job[:queue])
    end

    def parse_cron(json)
      value = JSON.parse(json)
      value.is_a?(Hash) ? value : {}
    rescue JSON::ParserError
      {}
    end

    # Every queue enqueued to or worked, sorted. @return [Array<String>]
    def names
      Internal.admin._queue_names
    end

    # Counters and sizes per queue, kept in Redis by the engine:
    #   { "default" => { processed:, failed:, expired: (jobs not started by their expires_in),
    #                    size:, scheduled:, retries:, processing:,
    #                    held:, latency: seconds the oldest ready job has waited (0.0 if none),
    #                    paused: true while Queue.pause holds it,
    #                    limited: jobs waiting in Redis for a concurrency slot or a throttle } }
    # processing: jobs running now, each in a worker slot (from the workers' heartbeats,
    # written within ~50 ms of a change); held: jobs workers have
    # taken and not finished — running, or prefetched and waiting for a slot (from their
    # held sets and processing lists, exact).
    # @param queues [Array, nil] which queues (default: every known queue)
    # @return [Hash{String => Hash}]
    def metrics(queues = nil)
      names = queues ? Array(queues).map(&:to_s) : self.names
      now = Time.now.to_f
      Internal.admin._metrics(names).to_h do |m|
        oldest = m[:oldest_enqueued_at]
        [m[:name], { processed: m[:processed], failed: m[:failed], expired: m[:expired], size: m[:size],
                     scheduled: m[:scheduled], retries: m[:retries], processing: m[:running], held: m[:held],
                     latency: oldest ? [now - oldest, 0.0].max.round(3) : 0.0, paused: m[:paused], limited: m[:limited] }]
      end
    end

    # Totals over every queue: processed, failed (runs ever), dead (jobs in the dead
    # set), failure_records (Queue.failed_jobs), and the sums of the per-queue sizes.
    # @return [Hash]
    def totals
      per_queue = metrics.values
      sum = ->(key) { per_queue.sum { |m| m[key] } }
      Internal.admin._totals.merge(
        enqueued: sum[:size], scheduled: sum[:scheduled], retries: sum[:retries], processing: sum[:processing],
        held: sum[:held], processes: processes.size
      )
    end

    # Live worker processes from their heartbeats, each a Hash: identity, hostname,
    # pid, queues, concurrency (per queue), processing (jobs running now), quiet, rss_kb, started_at, beat_at,
    # and error: nil, or what is wrong with a heartbeat FiberJob did not write (its
    # other fields are then empty or zero). @return [Array<Hash>]
    def processes
      Internal.admin._processes.map do |pairs|
        h = pairs.to_h
        queues = parse_list(h["queues"]).map(&:to_s)
        error = h["error"]
        error ||= "queues is not a list of names" if h.key?("queues") && queues.empty?
        { identity: h["identity"].to_s, hostname: h["hostname"].to_s, pid: h["pid"].to_i,
          queues: queues, concurrency: parse_list(h["concurrency"]).map(&:to_i),
          processing: h["busy"].to_i, quiet: h["quiet"] == "true", rss_kb: h["rss"].to_i,
          started_at: Time.at(h["started_at"].to_f), beat_at: Time.at(h["beat"].to_f), error: error }
      end
    end

    # Jobs a process is processing — taken and not finished (payload Hashes with
    # "queue"), oldest first.
    def processing_jobs(process)
      Internal.admin._processing_jobs(process[:identity], process[:queues]).map { |_queue, raw| decode(raw) }
    end

    # Ready jobs of a queue, oldest (next to run) first. @return [Array<Hash>]
    def jobs(queue, offset: 0, limit: 25)
      Internal.jobs._queue(queue_string(queue), offset.to_i, limit.to_i).map { |raw| decode(raw) }
    end

    # Scheduled jobs over every queue, soonest first; each payload has "at".
    def scheduled_jobs(offset: 0, limit: 25)
      waiting("scheduled", offset, limit)
    end

    # Failed jobs waiting for their retry, soonest first; each has "at" (the retry
    # time) and the error of the last failure.
    def retries(offset: 0, limit: 25)
      waiting("retry", offset, limit)
    end

    # Deletes one ready job. @return [Boolean] whether it was there
    def delete_job(queue, jid)
      Internal.jobs._delete_queued(queue_string(queue), jid_string(jid))
    end

    # Empties a queue. @return [Integer] how many jobs were deleted
    def clear(queue)
      Internal.jobs._clear(queue_string(queue))
    end

    # Pauses a queue for every worker, on every host, within a second: no new job of it
    # starts (running ones finish; jobs a worker prefetched go back to the queue;
    # enqueueing goes on). The state is in Redis: it survives worker restarts.
    # @return [Boolean] whether the queue was running until now
    def pause(queue)
      Internal.flow._set_paused(queue_string(queue), true)
    end

    # Resumes a paused queue: workers start its jobs again within a second.
    # @return [Boolean] whether the queue was paused until now
    def resume(queue)
      Internal.flow._set_paused(queue_string(queue), false)
    end

    # @return [Boolean]
    def paused?(queue)
      paused.include?(queue_string(queue))
    end

    # The lock of a unique job (a payload Hash with "unique_key"): { held_by: jid,
    # expires_in: seconds } while held, or nil when free (or the job is not unique).
    def unique_lock(job)
      digest = job["unique_key"]
      return nil unless digest.is_a?(String) && !digest.empty?

      lock = Internal.flow._unique_lock(queue_string(job["queue"] || "default"), digest)
      lock && { held_by: lock[:held_by], expires_in: lock[:expires_in_ms].positive? ? (lock[:expires_in_ms] / 1000.0).round(1) : nil }
    end

    # Where the limits of a job (a payload Hash) stand, for each it has:
    #   { concurrency: { key:, to:, lease:, running:, waiting: }, throttle: { key:, limit:, per:, started:, waiting: } }
    # running: jobs holding a lease of the key; started: starts in the last `per`
    # seconds; waiting: jobs of the key waiting in Redis. {} for a job without limits.
    def limit_state(job)
      queue = queue_string(job["queue"] || "default")
      state = {}
      c, t = job.values_at("concurrency", "throttle").map { |l| l.is_a?(Hash) && l["key"].is_a?(String) && l }
      if c
        now = Internal.flow._limit_state(queue, "concurrency", c["key"], 0.0)
        state[:concurrency] = { key: c["key"], to: c["to"], lease: c["lease"], running: now[:counted], waiting: now[:waiting] }
      end
      if t
        now = Internal.flow._limit_state(queue, "throttle", t["key"], t["per"].to_f)
        state[:throttle] = { key: t["key"], limit: t["limit"], per: t["per"], started: now[:counted], waiting: now[:waiting] }
      end
      state
    end

    # The paused queues, sorted. @return [Array<String>]
    def paused
      Internal.flow._paused
    end

    # Deletes a scheduled job or a pending retry (set: :scheduled or :retry).
    # @return [Boolean] whether it was there
    def delete_waiting(set, queue, jid)
      Internal.jobs._delete_waiting(set_string(set), queue_string(queue), jid_string(jid))
    end

    # Runs a scheduled job or pending retry now: it moves to the front of its queue.
    # @return [Boolean] whether it was there (false if it already ran)
    def run_now(set, queue, jid)
      Internal.jobs._run_waiting_now(set_string(set), queue_string(queue), jid_string(jid))
    end

    # Where a job is and its payload: { state: "enqueued" | "scheduled" | "retry" |
    # "limited" (waiting for a limit per key) | "processing" | "dead", queue:, job:, at: }
    # or nil.
    def find_job(jid)
      found = Internal.jobs._find(names, jid_string(jid))
      found && { state: found[:state], queue: found[:queue], job: decode(found[:payload]),
                 at: found[:run_at] && Time.at(found[:run_at]) }
    end

    # Jobs processed and failed per 10-second window over the last `minutes`, oldest
    # first: [{ at: Time (window start), processed:, failed: }, …]. The current window
    # is still filling. Windows are kept an hour.
    def throughput(minutes: 5)
      windows = (minutes.to_f * 6).ceil.clamp(1, 360)
      Internal.admin._throughput(windows).map { |window| window.merge(at: Time.at(window[:at])) }
    end

    # Redis server facts for dashboards: where FiberJob is connected (a Sentinel
    # master's current address; passwords masked), version, memory, clients, uptime.
    def redis_info
      info = Internal.admin._redis_info.each_line.to_h do |line|
        key, value = line.chomp.split(":", 2)
        [key, value]
      end
      { connected_to: Internal.handle._connected_to, version: info["redis_version"], used_memory: info["used_memory_human"],
        peak_memory: info["used_memory_peak_human"], connected_clients: info["connected_clients"].to_i,
        uptime_days: info["uptime_in_days"].to_i }
    end

    # --- helpers (private) -----------------------------------------------------

    def waiting(set, offset, limit)
      offset = offset.to_i
      limit = limit.to_i
      all = names.flat_map do |queue|
        Internal.jobs._waiting(set, queue, 0, offset + limit).map do |raw, at|
          decode(raw).merge("queue" => queue, "at" => at)
        end
      end
      all.sort_by { |j| j["at"] }[offset, limit] || []
    end

    # A stored payload as a Hash; what is not a JSON object shows as unreadable.
    def decode(raw)
      job = JSON.parse(raw)
      job.is_a?(Hash) ? job : unreadable(raw)
    rescue JSON::ParserError
      unreadable(raw)
    end

    def unreadable(raw)
      { "class" => "(unreadable payload)", "args" => [], "raw" => raw }
    end

    def parse_list(json)
      list = json ? JSON.parse(json) : []
      list.is_a?(Array) ? list : []
    rescue JSON::ParserError
      []
    end

    def queue_string(queue)
      name = queue.to_s
      raise ArgumentError, "a queue name is a String or Symbol, got #{queue.inspect}" if name.empty? || !name.match?(Configuration::QUEUE_NAME)

      name
    end

    def set_string(set)
      name = set.to_s
      raise ArgumentError, "set must be :scheduled or :retry, got #{set.inspect}" unless %w[scheduled retry].include?(name)

      name
    end

    def jid_string(jid)
      raise ArgumentError, "a jid is a String, got #{jid.inspect}" unless jid.is_a?(String) && !jid.empty?

      jid
    end
  
    private_class_method :waiting, :decode, :unreadable, :parse_list, :parse_cron, :last_tick,
                         :queue_string, :set_string, :jid_string
  end
end
