# frozen_string_literal: true

require "rbconfig"
require "json"
require "tmpdir"
require "fileutils"
require_relative "jobs"
require_relative "topology"
require_relative "faults"
require_relative "checker"

module Chaos
  # One chaos run (bin/chaos): starts the topology, worker and client processes, injects
  # the seeded fault schedule, waits for a quiet end, and hands the logs to the Checker.
  class Runner
    HERE = __dir__
    FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

    # A worker process's place: restarted in the same slot after a fault ends it.
    Slot = Struct.new(:index, :executor, :skew, :pid, :mutex)

    attr_reader :dir, :topology, :slots, :rng

    def initialize(topology:, duration:, seed:, workers: 3, clients: 2, fsync: "always", fault_every: 6.0,
                   skew: nil, keep: false, out: $stdout)
      @topology_name = topology
      @duration = duration
      @seed = seed
      @worker_count = workers
      @client_count = clients
      @fsync = fsync
      @fault_every = fault_every
      @keep = keep
      @skew = skew
      @out = out
      @rng = Random.new(seed)
      @dir = Dir.mktmpdir("fiber_job-chaos")
      @spawned = {}
      @spawn_lock = Mutex.new
    end

    # @return [Checker::Result]
    def run
      say "chaos: seed=#{@seed} topology=#{@topology_name} duration=#{@duration}s workers=#{@worker_count} " \
          "clients=#{@client_count} fsync=#{@fsync} logs=#{@dir}"
      @topology = Topology.build(@topology_name, fsync: @fsync, seed: @seed).start
      FiberJob.configure do |c|
        Chaos.connect(c, @topology.target)
        c.redis_wait_replicas = 0
      end
      @slots = Array.new(@worker_count) do |i|
        skew = i.zero? && faketime? ? @skew || ((@rng.rand < 0.5 ? -1 : 1) * (60 + @rng.rand(240))) : 0
        Slot.new(i, i.odd? ? "thread" : "fiber", skew, nil, Mutex.new)
      end
      @slots.each { |slot| start_worker(slot) }
      say "chaos: workers #{@slots.map { |s| "#{s.index}:#{s.executor}#{s.skew.zero? ? "" : format(" clock %+ds", s.skew)}" }.join(", ")}"
      @clients = Array.new(@client_count) { |i| start_client(i) }
      faults = Faults.new(self, duration: @duration, every: @fault_every)
      faults.print_schedule(@out)
      faults.run
      quiesce
      result = Checker.new(@dir, faults: faults.log, tolerance: 0.05).check
      result.report(@out)
      result
    ensure
      cleanup
    end

    def faketime? = File.exist?(FAKETIME_LIB)

    def say(line)
      @out.puts(line)
      @out.flush
    end

    def start_worker(slot)
      env = process_env("worker", slot.index).merge("CHAOS_EXECUTOR" => slot.executor)
      unless slot.skew.zero?
        env.merge!("LD_PRELOAD" => FAKETIME_LIB, "FAKETIME" => format("%+ds", slot.skew),
                   "FAKETIME_DONT_FAKE_MONOTONIC" => "1", "FAKETIME_NO_CACHE" => "1")
      end
      slot.pid = spawn(env, File.join(HERE, "worker.rb"), "worker-#{slot.index}")
    end

    def start_client(index)
      spawn(process_env("client", nil).merge("CHAOS_SEED" => (@seed * 100 + index + (@restarts = (@restarts || 0) + 1) * 7).to_s),
            File.join(HERE, "client.rb"), "client-#{index}")
    end

    def clients = @clients

    def replace_client(pid)
      index = @clients.index(pid)
      @clients[index] = start_client(index) if index
    end

    # Sends `signal`, waits up to `timeout` (then KILL); true when it had to kill.
    def end_process(pid, signal, timeout: 15)
      Process.kill(signal, pid)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      until Process.wait(pid, Process::WNOHANG)
        if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
          Process.kill("KILL", pid)
          Process.wait(pid)
          return true
        end
        sleep 0.05
      end
      false
    rescue Errno::ESRCH, Errno::ECHILD
      false
    ensure
      @spawn_lock.synchronize { @spawned.delete(pid) }
    end

    private

    def process_env(role, slot)
      { "CHAOS_LOG_DIR" => @dir, "CHAOS_REDIS" => JSON.generate(@topology.target(slot)), "CHAOS_ROLE" => role,
        "CHAOS_WAIT_REPLICAS" => @topology.wait_replicas.to_s }
    end

    def spawn(env, script, name)
      log = File.join(@dir, "#{name}.out")
      pid = Process.spawn(env, RbConfig.ruby, script, out: [log, "a"], err: [log, "a"], pgroup: true)
      @spawn_lock.synchronize { @spawned[pid] = name }
      pid
    end

    # The end of a run: no more faults, every worker up, clients stopped, and then a
    # wait until every job enqueued has run (queues, schedules, retries, held jobs and
    # waiting lists empty twice in a row).
    def quiesce
      @clients.each { |pid| end_process(pid, "TERM", timeout: 20) }
      @slots.each { |slot| slot.mutex.synchronize { start_worker(slot) if slot.pid.nil? } }
      say "chaos: clients stopped; waiting for the queues to drain"
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 300
      quiet = 0
      until quiet >= 3
        pending = pending_jobs
        quiet = pending&.zero? ? quiet + 1 : 0
        if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
          say "chaos: the queues did not drain within 300 s (#{pending.inspect} jobs left)"
          break
        end
        sleep 1
      end
      @slots.each { |slot| end_process(slot.pid, "TERM", timeout: 20) if slot.pid }
    end

    def pending_jobs
      FiberJob::Queue.metrics(%w[chaos flow]).values.sum do |m|
        m[:size] + m[:scheduled] + m[:retries] + m[:held] + m[:limited]
      end
    rescue FiberJob::Error
      nil
    end

    def cleanup
      @spawn_lock.synchronize { @spawned.keys }.each do |pid|
        Process.kill("CONT", pid)
        end_process(pid, "KILL", timeout: 5)
      rescue Errno::ESRCH
        nil
      end
      @topology&.cleanup
      if @keep
        say "chaos: logs kept in #{@dir}"
      else
        FileUtils.rm_rf(@dir)
      end
    end
  end
end
