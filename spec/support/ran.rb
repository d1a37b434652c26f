# frozen_string_literal: true

# Tracks what jobs run in this process (the in-process worker runs on a thread).
module Ran
  @lock = Mutex.new
  @calls = []
  @running = Hash.new(0)
  @peak = Hash.new(0)

  class << self
    attr_reader :calls

    def reset!
      @lock.synchronize do
        @calls = []
        @running = Hash.new(0)
        @peak = Hash.new(0)
      end
    end

    def record(*args)
      @lock.synchronize { @calls << args }
    end

    # A copy of every call recorded so far.
    def all
      @lock.synchronize { @calls.dup }
    end

    def enter(queue)
      @lock.synchronize do
        @running[queue] += 1
        @peak[queue] = [@peak[queue], @running[queue]].max
      end
    end

    def leave(queue)
      @lock.synchronize { @running[queue] -= 1 }
    end

    def peak(queue)
      @lock.synchronize { @peak[queue] }
    end

    def running(queue)
      @lock.synchronize { @running[queue] }
    end
  end
end
