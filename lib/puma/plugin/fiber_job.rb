# frozen_string_literal: true

require "puma/plugin"
require "fiber_job"

# `plugin :fiber_job` in a Puma config: every Puma worker (after fork), or the single
# process, runs a FiberJob worker on a thread of its own (FiberJob.embed with the
# configured queues and concurrency), and stops it gracefully when Puma stops the
# process (TERM, `pumactl stop`, a phased restart) — after Puma stopped serving
# requests, before the process exits.
Puma::Plugin.create do
  # Cluster mode: one embedded worker per Puma worker.
  # (Puma 7 renamed its hooks: before_worker_boot was on_worker_boot, after_booted was
  # on_booted; the old names warn there and are gone in later versions.)
  def config(dsl)
    plugin = self
    dsl.respond_to?(:before_worker_boot) ? dsl.before_worker_boot { plugin.embed } : dsl.on_worker_boot { plugin.embed }
    if dsl.respond_to?(:before_worker_shutdown)
      dsl.before_worker_shutdown { plugin.unembed }
    else
      dsl.on_worker_shutdown { plugin.unembed }
    end
  end

  # Single mode: one embedded worker once Puma booted.
  def start(launcher)
    return unless launcher.options[:workers].to_i.zero?

    events = launcher.events
    events.respond_to?(:after_booted) ? events.after_booted { embed } : events.on_booted { embed }
    events.respond_to?(:after_stopped) ? events.after_stopped { unembed } : events.on_stopped { unembed }
  end

  def embed
    @embedded ||= FiberJob.embed
  end

  def unembed
    @embedded&.stop
    @embedded = nil
  end
end
