# frozen_string_literal: true

module FiberJob
  class Web
    # One request: routing (`get`, `post`), the CSRF check, and rendering. Views are
    # rendered with this object's binding, so what they may call is `Helpers`.
    class Action
      include ERB::Util
      include Helpers

      attr_reader :request

      def initialize(web, request)
        @web = web
        @request = request
        @token = request.cookies[CSRF_COOKIE]
        @token = nil unless web.issued?(@token)
        @new_token = @token.nil?
        @token ||= web.issue_token
      end

      def respond
        path = request.path_info.to_s
        path = "/" if path.empty?
        if request.post?
          return forbidden("invalid or missing CSRF token; reload the page and try again") unless csrf_ok?

          post(path)
        elsif request.get? || request.head?
          get(path)
        else
          [405, { "content-type" => "text/plain", "allow" => "GET, POST" }, ["Method not allowed\n"]]
        end
      end

      private

      def get(path)
        case path
        when "/" then render("dashboard", totals: Queue.totals, redis: Queue.redis_info)
        when "/stats.json" then stats_json
        when "/metrics" then Metrics.response
        when "/busy" then busy
        when "/queues" then render("queues", queues: Queue.metrics, limits: limits)
        when %r{\A/queues/([\w.:-]+)\z} then queue_page(Regexp.last_match(1))
        when "/scheduled" then waiting_page(:scheduled)
        when "/retries" then waiting_page(:retry)
        when "/dead" then dead_page
        when "/failed"
          render("failed", jobs: Queue.failed_jobs(limit: PER_PAGE, offset: offset), total: Queue.totals[:failure_records])
        when "/cron" then render("cron", crons: Queue.cron_jobs)
        when "/batches" then batches
        when "/classes" then render("classes", classes: ClassMetrics.recent(minutes: window), minutes: window)
        when %r{\A/classes/([\w:]{1,200})\z} then class_page(Regexp.last_match(1))
        when %r{\A/batches/([0-9A-Za-z_-]{1,64})\z} then batch_page(Regexp.last_match(1))
        when %r{\A/jobs/(\h{1,64})\z} then job_page(Regexp.last_match(1))
        when %r{\A/assets/(app\.css|app\.js)\z} then asset(Regexp.last_match(1))
        else not_found
        end
      end

      def post(path)
        params = request.POST
        jid = params["jid"].to_s
        queue = params["queue"].to_s
        case path
        when %r{\A/queues/([\w.:-]+)/delete\z}
          back("/queues/#{Regexp.last_match(1)}", Queue.delete_job(Regexp.last_match(1), jid) ? "Deleted #{jid}" : "#{jid} was no longer queued")
        when %r{\A/queues/([\w.:-]+)/clear\z}
          back("/queues/#{Regexp.last_match(1)}", "Cleared #{Queue.clear(Regexp.last_match(1))} job(s)")
        when %r{\A/queues/([\w.:-]+)/(pause|resume)\z}
          name, action = Regexp.last_match.captures
          Queue.public_send(action, name)
          back("/queues", action == "pause" ? "Paused #{name}: no new job of it starts" : "Resumed #{name}")
        when %r{\A/(scheduled|retries)/(run|delete)\z}
          set = Regexp.last_match(1) == "scheduled" ? :scheduled : :retry
          action = Regexp.last_match(2)
          done = action == "run" ? Queue.run_now(set, queue, jid) : Queue.delete_waiting(set, queue, jid)
          back("/#{Regexp.last_match(1)}", done ? "#{action == "run" ? "Enqueued" : "Deleted"} #{jid}" : "#{jid} is no longer there")
        when "/dead/retry" then back("/dead", Queue.retry_dead(jid) ? "Retrying #{jid}" : "#{jid} is no longer dead")
        when "/dead/delete" then back("/dead", Queue.delete_dead(jid) ? "Deleted #{jid}" : "#{jid} is no longer dead")
        when "/dead/retry_all" then back("/dead", "Retrying #{Queue.retry_all_dead} job(s)")
        when "/dead/clear" then back("/dead", "Deleted #{Queue.clear_dead_jobs} job(s)")
        when "/cron/enqueue" then back("/cron", "Enqueued #{params["name"]} as #{Queue.enqueue_cron(params["name"].to_s)}")
        else not_found
        end
      rescue ArgumentError => e
        html(400, "<!doctype html><title>Bad request</title><p>#{h(e.message)}</p>")
      end

      # Totals for the cards, and the 10-second windows of the last 5 minutes for the
      # chart (rates per second; the filling window is divided by its elapsed time).
      def stats_json
        now = Time.now.to_f
        windows = Queue.throughput(minutes: 5).map do |w|
          span = [[now - w[:at].to_f, 10.0].min, 1.0].max
          { at: w[:at].to_i, processed: (w[:processed] / span).round(1), failed: (w[:failed] / span).round(1) }
        end
        json(Queue.totals.merge(time: now, throughput: windows))
      end

      def busy
        processes = Queue.processes
        running = processes.flat_map { |p| Queue.processing_jobs(p).map { |job| [p, job] } }
        render("busy", processes: processes, running: running)
      end

      def queue_page(name)
        metrics = Queue.metrics([name])[name]
        jobs, total = listing(metrics[:size]) { |from, n| Queue.jobs(name, offset: from, limit: n) }
        render("queue", name: name, metrics: metrics, jobs: jobs, total: total)
      end

      def waiting_page(set)
        totals = Queue.totals
        jobs, total = listing(set == :scheduled ? totals[:scheduled] : totals[:retries]) do |from, n|
          set == :scheduled ? Queue.scheduled_jobs(offset: from, limit: n) : Queue.retries(offset: from, limit: n)
        end
        render("waiting", set: set, jobs: jobs, total: total)
      end

      def dead_page
        jobs, total = listing(Queue.totals[:dead]) { |from, n| Queue.dead_jobs(offset: from, limit: n) }
        render("dead", jobs: jobs, total: total)
      end

      # A page of a list, or of its search's matches (`?q=`; see Search). Sets
      # @search for the views. @return [jobs, total]
      def listing(total)
        query = request.GET["q"].to_s.strip[0, Search::MAX_QUERY]
        return [yield(offset, PER_PAGE), total] if query.empty?

        matches, read, more = Search.run(query, ->(from, n) { yield(from, n) })
        @search = { query: query, read: read, more: more, matches: matches.size }
        [matches[offset, PER_PAGE] || [], matches.size]
      end

      def class_page(name)
        found = ClassMetrics.for_class(name, minutes: window)
        return not_found("No run of #{name} in the last #{window_label(window)}.") unless found

        render("class", metrics: found, minutes: window)
      end

      def batches
        list, total = Batch.list(offset: offset, limit: PER_PAGE)
        render("batches", batches: list, total: total)
      end

      def batch_page(bid)
        status = Batch.status(bid)
        return not_found("No batch #{bid} (never made, or expired 30 days after its last change).") unless status

        render("batch", batch: status, jobs: Batch.jobs(bid, offset: offset, limit: PER_PAGE))
      end

      def job_page(jid)
        found = Queue.find_job(jid)
        return not_found("No job #{jid} in any queue, set or the dead set (it may have finished).") unless found

        render("job", found: found, jid: jid)
      end

      # Concurrency per queue summed over live processes.
      def limits
        Queue.processes.each_with_object(Hash.new(0)) do |p, acc|
          p[:queues].zip(p[:concurrency]).each { |q, n| acc[q] += n.to_i }
        end
      end

      # The form's token equals the cookie's, and it is one this app issued.
      def csrf_ok?
        sent = request.POST["csrf"]
        cookie = request.cookies[CSRF_COOKIE]
        @web.issued?(cookie) && sent.is_a?(String) && sent.bytesize == cookie.bytesize &&
          Rack::Utils.secure_compare(sent, cookie)
      end

      def back(path, notice)
        [303, headers("location" => url("#{path}?notice=#{ERB::Util.url_encode(notice)}")), []]
      end

      def headers(extra = {})
        base = { "cache-control" => "no-store", "x-content-type-options" => "nosniff",
                 "x-frame-options" => "SAMEORIGIN", "referrer-policy" => "same-origin",
                 "content-security-policy" => "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'self'" }
        base.merge(extra).tap do |hdrs|
          if @new_token
            cookie = "#{CSRF_COOKIE}=#{@token}; path=#{root.empty? ? "/" : root}; HttpOnly; SameSite=Strict"
            cookie += "; Secure" if request.ssl?
            hdrs["set-cookie"] = cookie
          end
        end
      end

      def html(status, body)
        [status, headers("content-type" => "text/html; charset=utf-8"), [body]]
      end

      def json(value)
        [200, headers("content-type" => "application/json"), [JSON.generate(value)]]
      end

      def asset(name)
        body = File.read(File.join(ASSETS, name))
        [200, { "content-type" => ASSET_TYPES.fetch(name), "cache-control" => "public, max-age=3600" }, [body]]
      end

      def not_found(message = "Nothing here.")
        render("not_found", status: 404, message: message)
      end

      def forbidden(message)
        html(403, "<!doctype html><title>Forbidden</title><p>#{h(message)}</p>")
      end
    end
  end
end
