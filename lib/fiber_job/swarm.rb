# frozen_string_literal: true

module FiberJob
  # `fiber_job -P N`: one parent that has loaded the app forks N worker processes
  # (they share the loaded code copy-on-write), restarts a child that dies, and passes
  # TERM/INT, TSTP and TTIN on to every child. It exits when all children have
  # stopped after a TERM/INT: 0 when every child stopped cleanly, 1 otherwise.
  #
  # The parent never talks to Redis and runs no jobs. Each child is an ordinary
  # worker (its own runtime, connections and heartbeat; FIBER_JOB_SWARM_INDEX tells it
  # its slot) and stops by itself if the parent disappears (kill -9 of the parent).
  class Swarm
    SIGNALS = %w[TERM INT TSTP TTIN].freeze
    # A child that dies sooner than this after its start is restarted after a pause
    # that doubles up to MAX_RESTART_DELAY, so a child that cannot start does not spin.
    QUICK_DEATH = 5.0
    MAX_RESTART_DELAY = 30.0

    # @param count [Integer] how many worker processes
    # @param build [Proc] called in each child; returns the FiberJob::Worker to start
    def initialize(count, logger:, &build)
      raise ArgumentError, "a swarm needs at least one process, got #{count.inspect}" unless count.is_a?(Integer) && count.positive?

      @count = count
      @logger = logger
      @build = build
      @children = {} # pid => index
      @started = {} # index => monotonic start time
      @delays = Hash.new(0.0) # index => current restart pause
      @due = {} # index => monotonic time a restart is due
      @stopping = false
      @failed = false
    end

    # Runs until every child has stopped after TERM/INT. @return [Integer] exit status
    def run
      reader, writer = IO.pipe
      previous = SIGNALS.to_h { |sig| [sig, Signal.trap(sig) { writer.write_nonblock("#{sig}\n", exception: false) }] }
      @logger.info("fiber_job swarm: starting #{@count} worker processes (parent pid #{Process.pid})")
      @count.times { |i| spawn_child(i) }
      until @stopping && @children.empty?
        ready = IO.select([reader], nil, nil, 0.5)
        reader.read_nonblock(256, exception: false).to_s.split("\n").each { |sig| on_signal(sig) } if ready
        reap
        restart_due
      end
      @logger.info("fiber_job swarm: all worker processes stopped")
      @failed ? 1 : 0
    ensure
      previous&.each { |sig, handler| Signal.trap(sig, handler || "DEFAULT") }
      reader&.close
      writer&.close
    end

    private

    def on_signal(sig)
      if %w[TERM INT].include?(sig)
        @logger.info("fiber_job swarm: #{sig} received, stopping #{@children.size} worker processes") unless @stopping
        @stopping = true
        @due.clear
      end
      @children.each_key { |pid| signal_child(sig, pid) }
    end

    def signal_child(sig, pid)
      Process.kill(sig == "INT" ? "TERM" : sig, pid)
    rescue Errno::ESRCH
      nil # already gone; reap will see it
    end

    def reap
      while (pid, status = Process.wait2(-1, Process::WNOHANG))
        index = @children.delete(pid)
        next unless index

        child_exited(index, pid, status)
      end
    rescue Errno::ECHILD
      nil
    end

    def child_exited(index, pid, status)
      how = status.signaled? ? "killed by signal #{status.termsig}" : "exited with status #{status.exitstatus}"
      if @stopping
        @failed = true unless status.success?
        @logger.info("fiber_job swarm: worker #{index} (pid #{pid}) #{how}")
        return
      end
      lived = now - @started.fetch(index)
      @delays[index] = lived < QUICK_DEATH ? [[@delays[index] * 2, 1.0].max, MAX_RESTART_DELAY].min : 0.0
      @logger.warn("fiber_job swarm: worker #{index} (pid #{pid}) #{how}; restarting it" \
                   "#{@delays[index].positive? ? " in #{@delays[index]} s" : ""}")
      @due[index] = now + @delays[index]
    end

    def restart_due
      @due.select { |_, at| at <= now }.each_key do |index|
        @due.delete(index)
        spawn_child(index)
      end
    end

    def spawn_child(index)
      parent = Process.pid
      pid = fork do
        SIGNALS.each { |sig| Signal.trap(sig, "DEFAULT") }
        ENV["FIBER_JOB_SWARM_INDEX"] = index.to_s
        worker = @build.call
        watch_parent(parent, worker)
        worker.start
        exit!(0)
      rescue Exception => e # rubocop:disable Lint/RescueException -- a child must never return into the parent's loop
        warn("fiber_job swarm: worker #{index} failed: #{e.class}: #{e.message}")
        exit!(1)
      end
      @children[pid] = index
      @started[index] = now
    end

    # A child whose parent is gone (kill -9 of the parent) stops gracefully.
    def watch_parent(parent, worker)
      Thread.new do
        sleep 1 while Process.ppid == parent
        worker.stop
      end
    end

    def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end
end
