# frozen_string_literal: true

module FiberJob
  module Internal
    module Executor
      # The fiber executor's I/O selector under async 1.x: nio4r's, with timers that fire
      # on time. libev hands epoll a timeout in whole milliseconds, rounded up, so every
      # `sleep 0.01` in a job overshot by 0.5–1 ms — 7 % of a 10 ms sleep (the
      # sleep-bound workload in docs/PERFORMANCE.md). Here a wait for the next timer is split:
      # whole milliseconds in the selector (woken by I/O and by `wakeup` as before), the
      # rest (under 1 ms) in a precise sleep of the reactor's own thread between two
      # non-blocking looks at the selector. I/O that becomes ready during that last
      # sub-millisecond waits for its end, which is no later than the selector would have
      # woken anyway.
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

        # Woken by the reactor (another thread, a signal trap): the select returns now.
        def wakeup
          @woken = true
          @inner.wakeup
        end

        def close = @inner.close

        def closed? = @inner.closed?

        # @param interval [Float, nil] seconds until the next timer (nil: none)
        def select(interval = nil)
          return @inner.select(interval) unless interval&.positive?

          deadline = now + interval
          loop do
            rest = deadline - now
            break if rest < 0.001

            # Whole milliseconds in the selector. libev times its wait from its loop's
            # cached clock, so the wait can end before the interval is over (by as long
            # as the reactor ran since its last select): wait again for what is left,
            # unless I/O is ready or the reactor was woken.
            ready = @inner.select((rest * 1000).floor / 1000.0)
            return ready if ready || @woken
          end
          # Under a millisecond left: a look (what is ready already, such as a wake byte
          # this very thread wrote, must not wait), a precise sleep of the reactor's own
          # (blocking) fiber, and a last look.
          ready = @inner.select(0)
          return ready if ready || @woken

          rest = deadline - now
          sleep(rest) if rest.positive?
          @inner.select(0)
        ensure
          @woken = false
        end

        private

        def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      end
    end
  end
end
