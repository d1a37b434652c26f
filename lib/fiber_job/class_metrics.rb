# frozen_string_literal: true

module FiberJob
  # Per-class metrics, as the workers' ackers record them (per minute, kept 72 hours,
  # and since the start): processed and failed runs, time run, and an execution-time
  # histogram with `BUCKETS` (upper bounds in seconds; a last bin for longer runs).
  module ClassMetrics
    BUCKETS = Internal::Native::METRICS_BUCKETS
    # Longest window the per-minute data covers.
    MAX_MINUTES = 72 * 60

    class << self
      # Each class's numbers over the last `minutes` (at most 72 hours), busiest first:
      # [{ class:, processed:, failed:, seconds:, average:, histogram: [count per bin],
      #    series: [[Time, processed, failed, seconds], …] (one per minute, oldest first) }]
      def recent(minutes: 60)
        minutes = Integer(minutes).clamp(1, MAX_MINUTES)
        _total, per_minute = Internal.class_metrics._read(minutes)
        classes = per_minute.flat_map { |_, fields| fields.keys.map { |f| f.rpartition("|").first } }.uniq
        classes.map { |name| summary(name, per_minute) }.sort_by { |c| [-c[:processed] - c[:failed], c[:class]] }
      end

      # One class's numbers (as in `recent`), or nil when it ran in none of those minutes.
      def for_class(name, minutes: 60)
        recent(minutes: minutes).find { |c| c[:class] == name }
      end

      # Since the metrics began, per class: { "Class" => { processed:, failed:,
      # seconds:, histogram: [...] } } (Prometheus's counters).
      def totals
        total, = Internal.class_metrics._read(1)
        total.group_by { |f, _| f.rpartition("|").first }.to_h do |name, fields|
          [name, numbers(fields.to_h { |f, v| [f.rpartition("|").last, v] })]
        end
      end

      private

      def summary(name, per_minute)
        prefix = "#{name}|"
        series = per_minute.map do |at, fields|
          own = fields.select { |f, _| f.start_with?(prefix) }.transform_keys { |f| f.delete_prefix(prefix) }
          [at, numbers(own)]
        end
        sum = series.map(&:last).each_with_object(numbers({})) do |n, acc|
          acc[:processed] += n[:processed]
          acc[:failed] += n[:failed]
          acc[:seconds] += n[:seconds]
          acc[:histogram] = acc[:histogram].zip(n[:histogram]).map(&:sum)
        end
        runs = sum[:processed] + sum[:failed]
        sum.merge(class: name, average: runs.zero? ? 0.0 : sum[:seconds] / runs,
                  series: series.map { |at, n| [Time.at(at), n[:processed], n[:failed], n[:seconds]] })
      end

      # { processed:, failed:, seconds:, histogram: } from a class's fields (p, f, s, b<i>).
      def numbers(fields)
        { processed: fields["p"].to_i, failed: fields["f"].to_i, seconds: fields["s"].to_i / 1e6,
          histogram: Array.new(BUCKETS.size + 1) { |i| fields["b#{i}"].to_i } }
      end
    end
  end
end
