# frozen_string_literal: true

# What the chaos run's processes (workers and clients, see bin/chaos) load: the job
# classes of the load mix and the append-only log each process writes what it did to.
#
# Log lines, one per event, written with one write(2) on a file opened O_APPEND before
# the call that did the event returns (so a kill -9 right after loses nothing written):
#   E jid class key due mono        an enqueue that returned this jid (client)
#   S jid attempt pid mono class tag a run started (server middleware)
#   F jid attempt pid mono result    it ended: ok, fail (a StandardError) or int (an interruption)
#   R jid cursor mono                an iterable job (re)started from this cursor
#   I jid item mono                  an iterable job processed this item
#   B bid size mono                  a batch's jobs block returned with `size` jobs
# `mono` is CLOCK_MONOTONIC (one clock for every process of the machine, even the one
# under faketime: FAKETIME_DONT_FAKE_MONOTONIC=1); `due` is epoch seconds of the client's
# clock; `tag` is a keyed job's key, a cron run's tick, a callback's bid and event.

$LOAD_PATH.unshift(File.expand_path("../../lib", __dir__))
require "fiber_job"
require "json"
require_relative "settings"

module Chaos
  module Log
    class << self
      def open(role)
        dir = ENV.fetch("CHAOS_LOG_DIR")
        @file = File.open(File.join(dir, "#{role}-#{Process.pid}.log"), File::WRONLY | File::APPEND | File::CREAT)
      end

      def write(*fields)
        @file.syswrite("#{fields.join(" ")}\n")
      end

      def now = Process.clock_gettime(Process::CLOCK_MONOTONIC).round(6)
    end
  end

  # Configures FiberJob to reach the run's Redis (CHAOS_REDIS, JSON from the runner).
  def self.connect(config, target = JSON.parse(ENV.fetch("CHAOS_REDIS")))
    if target["cluster"]
      config.redis_cluster = target["cluster"]
    elsif target["sentinels"]
      config.redis_sentinels = target["sentinels"]
      config.redis_sentinel_master = target["master"]
    else
      config.redis_url = target["url"]
    end
    config.network_timeout = 2
    config.redis_wait_replicas = Integer(ENV.fetch("CHAOS_WAIT_REPLICAS", "0"))
    config.log_level = :warn
  end

  # Server middleware: logs every run's start and end, whatever the class.
  class Trace
    def call(job, payload, _queue)
      jid = payload["jid"]
      attempt = job.retry_count
      Log.write("S", jid, attempt, Process.pid, Log.now, payload["class"], Chaos.tag(payload))
      begin
        yield
      rescue StandardError
        Log.write("F", jid, attempt, Process.pid, Log.now, "fail")
        raise
      rescue Exception # rubocop:disable Lint/RescueException -- an interruption: logged, then on its way
        Log.write("F", jid, attempt, Process.pid, Log.now, "int")
        raise
      end
      Log.write("F", jid, attempt, Process.pid, Log.now, "ok")
    end
  end

  def self.tag(payload)
    case payload["class"]
    when "ChaosUnique", "ChaosLimited", "ChaosThrottled" then payload["args"][0]
    when "ChaosCron" then payload["cron_tick"]
    when "ChaosCallback" then "#{payload["args"][0]["bid"]}/#{payload["args"][0]["event"]}"
    else payload["bid"] || "-"
    end
  end

  # Sleeps `ms` milliseconds (the job's length).
  def self.work(ms) = sleep(ms / 1000.0)
end

class ChaosJob < FiberJob::Job
  def initialize
    super
    @queue = :chaos
  end

  def retry_delay(_attempt) = 1

  def perform(_id, ms) = Chaos.work(ms)
end

# Fails its first run, then succeeds.
class ChaosFlaky < ChaosJob
  def perform(_id, ms)
    Chaos.work(ms)
    raise "chaos: first runs fail" if retry_count.zero?
  end
end

# Fails every run: ends in the dead set after DOOMED_RETRIES retries.
class ChaosDoomed < ChaosJob
  def initialize
    super
    @max_retries = Chaos::DOOMED_RETRIES
  end

  def perform(_id) = raise("chaos: this job always fails")
end

class ChaosUnique < ChaosJob
  unique_for 300
  unique_by { |key, *| key }

  def perform(_key, ms) = Chaos.work(ms)
end

class ChaosFlowJob < FiberJob::Job
  def initialize
    super
    @queue = :flow
  end

  def retry_delay(_attempt) = 1
end

class ChaosLimited < ChaosFlowJob
  limits_concurrency to: Chaos::LIMIT_TO, key: ->(key, *) { key }, lease: 8

  def perform(_key, ms) = Chaos.work(ms)
end

class ChaosThrottled < ChaosFlowJob
  throttle Chaos::THROTTLE, per: Chaos::THROTTLE_PER, key: ->(key, *) { key }

  def perform(_key, ms) = Chaos.work(ms)
end

class ChaosMember < ChaosJob
  def perform(_id, ms) = Chaos.work(ms)
end

class ChaosCallback < ChaosJob
  def perform(_status, _options) = nil
end

class ChaosIterable < FiberJob::IterableJob
  checkpoint_every iterations: 5, seconds: 5

  def initialize
    super
    @queue = :chaos
  end

  def retry_delay(_attempt) = 1

  def build_enumerator(_id, cursor:)
    Chaos::Log.write("R", jid, cursor.nil? ? "-" : cursor, Chaos::Log.now)
    enumerator_for_array((0...Chaos::ITEMS).to_a, cursor: cursor)
  end

  def each_iteration(item, _id)
    Chaos.work(20)
    Chaos::Log.write("I", jid, item, Chaos::Log.now)
  end
end

class ChaosCron < FiberJob::CronJob
  cron Chaos::CRON

  def initialize
    super
    @queue = :chaos
  end

  def execute_cron_job = nil
end
