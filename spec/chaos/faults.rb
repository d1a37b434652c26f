# frozen_string_literal: true

module Chaos
  # The fault schedule of a run, drawn from its seed before the run starts (so a seed
  # replays the same faults at the same offsets), and its execution: each fault in a
  # thread of its own at its time, so faults overlap. What each fault did is logged —
  # kind, the pid it hit (or "*" for all), when it began and ended (CLOCK_MONOTONIC) —
  # for the checker, which attributes duplicate runs to them.
  class Faults
    # What every topology suffers (name => weight); topologies add their own.
    COMMON = { worker_kill: 4, worker_term: 2, worker_stop: 2, client_kill: 2, redis_full: 1 }.freeze

    Planned = Struct.new(:at, :kind, :slot, :seconds)
    Done = Struct.new(:kind, :target, :from, :to, :detail)

    attr_reader :log, :schedule

    def initialize(runner, duration:, every:)
      @runner = runner
      @duration = duration
      @log = []
      @lock = Mutex.new
      kinds = COMMON.merge(runner.topology.fault_kinds).flat_map { |kind, weight| [kind] * weight }
      rng = runner.rng
      @schedule = []
      at = 3.0 + rng.rand * every
      while at < duration - 2
        @schedule << Planned.new(at.round(2), kinds[rng.rand(kinds.size)], rng.rand(runner.slots.size),
                                 (1 + rng.rand * 9).round(2))
        at += every * -Math.log(1 - rng.rand) # exponential gaps: bursts and lulls
      end
    end

    def print_schedule(out)
      out.puts "chaos: #{@schedule.size} faults planned:"
      @schedule.each { |f| out.puts format("  %7.2fs %-19s slot %d  %.2fs", f.at, f.kind, f.slot, f.seconds) }
    end

    # Runs the schedule for `duration` seconds; returns when every fault has ended.
    def run
      start = @start = now
      threads = @schedule.map do |fault|
        Thread.new do
          sleep [start + fault.at - now, 0].max
          inject(fault)
        rescue StandardError => e
          @runner.say "chaos: fault #{fault.kind} at #{fault.at}s failed: #{e.class}: #{e.message}"
        end
      end
      sleep [start + @duration - now, 0].max
      threads.each(&:join)
    end

    private

    def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

    def record(kind, target, from, detail = "")
      entry = Done.new(kind, target, from, now, detail)
      @lock.synchronize { @log << entry }
      @runner.say format("chaos: %7.2fs %-19s %-8s for %.2fs %s", entry.from - @start, kind, target, entry.to - entry.from, detail)
    end

    def inject(fault)
      slot = @runner.slots[fault.slot]
      from = now
      case fault.kind
      when :worker_kill, :worker_term
        slot.mutex.synchronize do
          pid = slot.pid
          killed = @runner.end_process(pid, fault.kind == :worker_kill ? "KILL" : "TERM", timeout: 15)
          slot.pid = nil
          record(fault.kind, pid, from, killed ? "(killed after 15 s)" : "")
          sleep fault.seconds / 3
          @runner.start_worker(slot)
        end
      when :worker_stop
        # Longer than the heartbeat's 5 s lease: the others recover its jobs meanwhile.
        pid = slot.mutex.synchronize { slot.pid }
        begin
          Process.kill("STOP", pid)
          sleep 5 + fault.seconds / 2
          Process.kill("CONT", pid)
        rescue Errno::ESRCH
          nil # killed meanwhile by another fault
        end
        record(:worker_stop, pid, from)
      when :client_kill
        pid = @runner.clients[fault.slot % @runner.clients.size]
        @runner.end_process(pid, "KILL")
        record(:client_kill, pid, from)
        @runner.replace_client(pid)
      when :redis_full then redis_full(fault, from)
      when :redis_kill
        fsync = @runner.topology.redis_kill(fault.seconds / 3)
        record(fsync == "always" ? :redis_kill : :redis_kill_everysec, "*", from, "AOF appendfsync #{fsync}")
      when :net_cut, :net_latency, :net_stall, :net_partition then network(fault, slot, from)
      when :failover
        @runner.topology.failover
        sleep 2
        record(:failover, "*", from)
      when :master_kill
        @runner.topology.master_kill(2 + fault.seconds / 2)
        record(:master_kill, "*", from)
      when :cluster_master_kill
        port = @runner.topology.cluster_master_kill(1 + fault.seconds / 3, @runner.rng.dup)
        record(:cluster_master_kill, "*", from, "port #{port}")
      else raise "unknown fault #{fault.kind}"
      end
    end

    # Redis refuses writes (maxmemory below what it holds) for a while.
    def redis_full(fault, from)
      ports = @runner.topology.data_ports
      ports.each do |port|
        used = Resp.ask(port, "INFO", "memory").to_s[/used_memory:(\d+)/, 1].to_i
        Resp.ask(port, "CONFIG", "SET", "maxmemory", [used - 1024, 1024 * 1024].max.to_s)
      end
      sleep fault.seconds / 2
      ports.each { |port| Resp.ask(port, "CONFIG", "SET", "maxmemory", "0") }
      record(:redis_full, "*", from)
    end

    # The network between one worker and Redis (single topology: each worker has a proxy).
    def network(fault, slot, from)
      proxy = @runner.topology.proxy(slot.index)
      pid = slot.pid
      case fault.kind
      when :net_cut
        proxy.cut_chance = 0.02
        proxy.drop_all
        sleep fault.seconds
        proxy.cut_chance = 0.0
      when :net_latency
        proxy.latency = 0.001 + (fault.seconds / 200)
        sleep fault.seconds
        proxy.latency = 0.0
      when :net_stall
        proxy.stall!
        sleep fault.seconds / 2
        proxy.unstall!
      when :net_partition # longer than the heartbeat's lease
        proxy.partition!
        sleep 5 + fault.seconds / 2
        proxy.heal!
      end
      record(fault.kind, pid, from)
    end
  end
end
