# frozen_string_literal: true

module FiberJob
  module Internal
    module Executor
      # The fiber executor's I/O selector under async 1.x: nio4r's, with timers that fire
      # on time. libev hands epoll a timeout in whole milliseconds, rounded up, so every
      # `sleep 0.01` in a job overshot by 0.5–1 ms — 7 % of a 10 ms sleep (the
      # sleep-bound workload in docs/PERFORMANCE.md). Here a wait for the next timer is split: the whole
      # milliseconds in the selector (woken by I/O as before), the rest (under 1 ms) in a
      # precise sleep of the reactor's own thread, then a non-blocking look at the
      # selector (and, for a wait under 1 ms, a non-blocking look before it too). I/O that becomes ready during that last sub-millisecond waits for its
      # end, which is no later than the selector would have woken anyway.
      #
      # Async 2.x selects with its own precise timeouts (io-event) and is left alone.
      class FineSelector
        # @param inner [NIO::Selector]
        def initialize(inner)
          @inner = inner
        end

        # Async 1.x's reactor with this selector, or nil where it does not apply.
        def self.reactor
          return nil unless defined?(::Async::Reactor.selector) && defined?(::NIO::Selector)

          ::Async::Reactor.new(selector: new(::Async::Reactor.selector))
        end

        def register(io, interest) = @inner.register(io, interest)

        def wakeup = @inner.wakeup

        def close = @inner.close

        def closed? = @inner.closed?

        # @param interval [Float, nil] seconds until the next timer (nil: none)
        def select(interval = nil)
          return @inner.select(interval) unless interval&.positive?

          # Whole milliseconds in the selector; under one, a look first: what is ready
          # already (a wake byte written by this very thread) must not wait.
          deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + interval
          whole = (interval * 1000).floor / 1000.0
          ready = @inner.select(whole)
          return ready if ready

          # The rest by the clock (the selector's own timeout may end a little early), at
          # most a millisecond: a select woken early by a signal must not block the
          # reactor for the rest of a long timer.
          rest = [deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0.001].min
          sleep(rest) if rest.positive? # the reactor's own (blocking) fiber: a real nanosleep
          @inner.select(0)
        end
      end
    end
  end
end
