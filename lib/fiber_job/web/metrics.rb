# frozen_string_literal: true

module FiberJob
  class Web
    # Prometheus text exposition (format 0.0.4) of FiberJob's counters and gauges, read
    # through FiberJob::Queue. A Rack app on its own (`run FiberJob::Web::Metrics`), and
    # `GET /metrics` of the Web UI.
    module Metrics
      CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

      # name, type, help, per-queue metrics key (nil: a process-wide value)
      FAMILIES = [
        ["fiber_job_processed_total", "counter", "Jobs performed successfully.", :processed],
        ["fiber_job_failed_total", "counter", "Job runs that raised (each failed retry counts).", :failed],
        ["fiber_job_expired_total", "counter", "Jobs not started by their expires_in deadline (in the dead set).", :expired],
        ["fiber_job_queue_size", "gauge", "Jobs ready to run.", :size],
        ["fiber_job_queue_latency_seconds", "gauge", "How long the oldest ready job has waited.", :latency],
        ["fiber_job_scheduled", "gauge", "Jobs scheduled with perform_in/perform_at.", :scheduled],
        ["fiber_job_retries", "gauge", "Failed jobs waiting for a retry.", :retries],
        ["fiber_job_processing", "gauge", "Jobs running now, each using a worker slot.", :processing],
        ["fiber_job_held", "gauge", "Jobs workers have taken and not finished (running, or prefetched and waiting).", :held],
        ["fiber_job_limited", "gauge", "Jobs waiting in Redis for a concurrency slot or a throttle (limits per key).", :limited],
        ["fiber_job_queue_paused", "gauge", "1 while the queue is paused (Queue.pause), else 0.", :paused]
      ].freeze

      module_function

      def call(_env)
        response
      end

      def response
        [200, { "content-type" => CONTENT_TYPE, "cache-control" => "no-store" }, [render]]
      rescue FiberJob::ConnectionError => e
        [503, { "content-type" => "text/plain" }, ["# Redis is unreachable: #{e.message.lines.first}"]]
      end

      # @return [String] the exposition text
      def render
        metrics = Queue.metrics
        totals = Queue.totals
        out = +""
        FAMILIES.each do |name, type, help, key|
          family(out, name, type, help)
          metrics.each { |queue, m| out << "#{name}{queue=\"#{label(queue)}\"} #{value(m[key])}\n" }
        end
        family(out, "fiber_job_dead", "gauge", "Jobs in the dead set.")
        out << "fiber_job_dead #{value(totals[:dead])}\n"
        family(out, "fiber_job_processes", "gauge", "Live worker processes (by heartbeat).")
        out << "fiber_job_processes #{value(totals[:processes])}\n"
        per_class(out, ClassMetrics.totals)
        out
      end

      # Per job class since the metrics began: runs and a histogram of execution time.
      def per_class(out, classes)
        family(out, "fiber_job_class_processed_total", "counter", "Jobs of the class performed successfully.")
        classes.each { |name, n| out << "fiber_job_class_processed_total{class=\"#{label(name)}\"} #{n[:processed]}\n" }
        family(out, "fiber_job_class_failed_total", "counter", "Runs of the class that raised.")
        classes.each { |name, n| out << "fiber_job_class_failed_total{class=\"#{label(name)}\"} #{n[:failed]}\n" }
        family(out, "fiber_job_class_execution_seconds", "histogram", "Execution time of the class's runs.")
        classes.each do |name, n|
          cls = label(name)
          cumulative = 0
          n[:histogram].each_with_index do |count, i|
            cumulative += count
            le = i < ClassMetrics::BUCKETS.size ? format("%g", ClassMetrics::BUCKETS[i]) : "+Inf"
            out << "fiber_job_class_execution_seconds_bucket{class=\"#{cls}\",le=\"#{le}\"} #{cumulative}\n"
          end
          out << "fiber_job_class_execution_seconds_sum{class=\"#{cls}\"} #{value(n[:seconds].to_f)}\n"
          out << "fiber_job_class_execution_seconds_count{class=\"#{cls}\"} #{cumulative}\n"
        end
      end

      def family(out, name, type, help)
        out << "# HELP #{name} #{help}\n# TYPE #{name} #{type}\n"
      end

      def label(value)
        value.to_s.gsub("\\") { "\\\\" }.gsub("\"", "\\\"").gsub("\n", "\\n")
      end

      def value(number)
        return number ? "1" : "0" if number == true || number == false

        number.is_a?(Float) ? format("%.6g", number) : number.to_i.to_s
      end
    end
  end
end
