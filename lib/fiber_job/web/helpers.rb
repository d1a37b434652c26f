# frozen_string_literal: true

module FiberJob
  class Web
    # What views may call (they render with the action's binding): URLs under the
    # mount point, the CSRF field, paging, and formatting of numbers, times and jobs.
    # Every value a view prints goes through `h`.
    module Helpers
      def root
        request.script_name.to_s
      end

      def url(path)
        "#{root}#{path}"
      end

      def csrf_field
        %(<input type="hidden" name="csrf" value="#{@token}">)
      end

      # The page asked for, 1 when the parameter is missing or not a number, at most
      # MAX_PAGE (later pages would be empty).
      def page
        raw = request.GET["page"]
        raw.is_a?(String) && raw.match?(/\A\d{1,12}\z/) ? raw.to_i.clamp(1, MAX_PAGE) : 1
      end

      def offset
        (page - 1) * PER_PAGE
      end

      def number(n)
        n.to_i.to_s.reverse.scan(/\d{1,3}/).join(",").reverse
      end

      def time(t)
        return "—" unless t.is_a?(Numeric) || t.is_a?(Time)

        # Sidekiq 8 writes integer milliseconds (a job its client pushed).
        t = Time.at(t.is_a?(Integer) && t >= 100_000_000_000 ? t / 1000.0 : t) if t.is_a?(Numeric)
        %(<time datetime="#{h(t.utc.iso8601)}" title="#{h(t.utc.iso8601)}">#{h(relative(t))}</time>)
      rescue RangeError, ArgumentError, FloatDomainError
        "—"
      end

      def relative(t)
        diff = t.to_f - Time.now.to_f
        words = duration(diff.abs)
        diff.negative? ? "#{words} ago" : "in #{words}"
      end

      def duration(seconds)
        case seconds
        when 0...1 then "#{(seconds * 1000).round} ms"
        when 1...60 then "#{seconds.round(1)} s"
        when 60...3600 then "#{(seconds / 60).round} min"
        when 3600...86_400 then "#{(seconds / 3600).round(1)} h"
        else "#{(seconds / 86_400).round(1)} d"
        end
      end

      def args(list)
        h(JSON.generate(list || [])[0, 300])
      end

      def job_link(job)
        jid = job["jid"].to_s
        %(<a class="mono" href="#{h(url("/jobs/#{ERB::Util.url_encode(jid)}"))}">#{h(jid)}</a>)
      end

      def batch_link(bid)
        %(<a class="mono" href="#{h(url("/batches/#{ERB::Util.url_encode(bid)}"))}">#{h(bid)}</a>)
      end

      # "n of total done" and a bar, for a batch's status.
      def batch_progress(batch)
        total = batch[:total]
        done = total - batch[:pending]
        pct = total.zero? ? 100 : (100.0 * done / total).floor
        %(<progress max="100" value="#{pct}"></progress> #{number(done)} of #{number(total)} succeeded)
      end

      # A badge per callback event that fired.
      def fired_badges(batch)
        fired = %i[complete success death].select { |e| batch[e] }
        return %(<span class="badge">running</span>) if fired.empty?

        fired.map { |e| %(<span class="badge #{e == :death ? "dead" : "ok"}">#{e}</span>) }.join(" ")
      end

      WINDOWS = { 60 => "hour", 480 => "8 hours", 1440 => "24 hours", 4320 => "72 hours" }.freeze

      # Minutes of the Metrics pages' window (?minutes=, one of WINDOWS).
      def window
        asked = request.GET["minutes"].to_i
        WINDOWS.key?(asked) ? asked : 60
      end

      def window_label(minutes) = WINDOWS.fetch(minutes)

      # The search form of a list page, and what the last search found.
      def search_form
        q = @search ? @search[:query] : ""
        found = if @search
                  more = @search[:more] ? " (searched the newest #{number(@search[:read])}; narrow the query)" : ""
                  %(<span class="muted">#{number(@search[:matches])} match(es)#{more} · <a href="#{h(url(request.path_info))}">clear</a></span>)
                end
        %(<form method="get" action="#{h(url(request.path_info))}" class="search" role="search">) +
          %(<input type="search" name="q" value="#{h(q)}" maxlength="200" placeholder="class, jid or part of the arguments">) +
          %(<button type="submit">Search</button> #{found}</form>)
      end

      def window_links(path, current)
        WINDOWS.map do |m, label|
          css = m == current ? %( class="current") : ""
          %(<a href="#{h(url("#{path}?minutes=#{m}"))}"#{css}>#{h(label)}</a>)
        end.join(" ")
      end

      # An SVG chart of per-minute [time, processed, failed, seconds] rows: processed
      # and failed as two lines, scaled to the busiest minute.
      def chart(series, width:, height:)
        top = [series.map { |_, p, f, _| [p, f].max }.max.to_i, 1].max
        step = series.size > 1 ? width.to_f / (series.size - 1) : width.to_f
        lines = { "processed" => 1, "failed" => 2 }.map do |css, col|
          points = series.each_with_index.map do |row, i|
            format("%.1f,%.1f", i * step, height - 2 - ((height - 4) * row[col] / top.to_f))
          end
          %(<polyline class="#{css}" points="#{points.join(" ")}"/>)
        end
        %(<svg class="chart" viewBox="0 0 #{width} #{height}" width="#{width}" height="#{height}" role="img" ) +
          %(aria-label="runs per minute, at most #{top}">#{lines.join}</svg>)
      end

      def display_class(job)
        job["wrapped"] ? "#{job["wrapped"]} (ActiveJob)" : job["class"].to_s
      end

      def pager(total)
        pages = [(total.to_f / PER_PAGE).ceil, 1].max
        return "" if pages == 1

        base = request.path_info
        q = @search ? "&q=#{ERB::Util.url_encode(@search[:query])}" : ""
        links = []
        links << %(<a href="#{h(url("#{base}?page=#{page - 1}#{q}"))}" rel="prev">← Newer</a>) if page > 1
        links << %(<span>Page #{page} of #{pages}</span>)
        links << %(<a href="#{h(url("#{base}?page=#{page + 1}#{q}"))}" rel="next">Older →</a>) if page < pages
        %(<nav class="pager">#{links.join}</nav>)
      end

      def flash
        msg = request.GET["notice"]
        msg.is_a?(String) && !msg.empty? ? %(<p class="notice" role="status">#{h(msg[0, 200])}</p>) : ""
      end

      def render(view, status: 200, **locals)
        locals.each { |k, v| instance_variable_set(:"@#{k}", v) }
        @content = @web.template(view).result(binding)
        @view = view
        html(status, @web.template("layout").result(binding))
      end
    end
  end
end
