# frozen_string_literal: true

require "time"

module FiberJob
  # Log formats and the per-job context every line carries. While a job runs, its
  # class, jid and queue are the current fiber's context (`Thread.current[]` is
  # fiber-local), so lines a job logs through FiberJob.logger name the job too.
  module Logging
    CONTEXT = :fiber_job_context

    module_function

    # @return [Hash, nil] the running job's class, jid and queue (and its elapsed
    #   seconds once it ended); nil outside a job. Built from the carrier's
    #   Processor::Slot, which `Thread.current[CONTEXT]` (fiber-local) holds.
    def context
      Thread.current[CONTEXT]&.context
    end

    def formatter(format)
      format == :json ? JSONFormatter.new : TextFormatter.new
    end

    def tid
      (Thread.current.object_id ^ Process.pid).to_s(36)
    end

    # `2026-12-01T10:00:00.123Z pid=1 tid=2bx class=EmailJob jid=… INFO: done`
    class TextFormatter
      def call(severity, time, _progname, message)
        ctx = Logging.context
        fields = ctx ? " #{ctx.map { |k, v| "#{k}=#{v}" }.join(" ")}" : ""
        "#{time.utc.iso8601(3)} pid=#{Process.pid} tid=#{Logging.tid}#{fields} #{severity}: #{text(message)}\n"
      end

      private

      def text(message)
        case message
        when String then message
        when Exception then "#{message.class}: #{message.message}"
        else message.inspect
        end
      end
    end

    # One JSON object per line: ts, pid, tid, lvl, msg, and ctx when a job runs.
    class JSONFormatter < TextFormatter
      def call(severity, time, _progname, message)
        line = { "ts" => time.utc.iso8601(3), "pid" => Process.pid, "tid" => Logging.tid,
                 "lvl" => severity, "msg" => text(message) }
        ctx = Logging.context
        line["ctx"] = ctx if ctx
        "#{JSON.generate(line)}\n"
      end
    end
  end
end
