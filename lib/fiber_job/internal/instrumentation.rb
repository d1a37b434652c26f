# frozen_string_literal: true

module FiberJob
  module Internal
    # What `FiberJob.on` subscribers receive. `duration` is in seconds; `error` is the
    # exception of a failed perform; `retry_at` (epoch seconds) is set on :retry.
    # `skipped`: an :enqueue of a unique job that was not enqueued (a duplicate).
    Event = Struct.new(:name, :job_class, :jid, :queue, :args, :duration, :error, :retry_at, :skipped,
                       keyword_init: true)

    # Subscribers to job events. Events: :enqueue (after the payload is in Redis),
    # :perform (after every run, successful or not), :retry (a failure that will be
    # retried), :dead (a job that will not run again).
    #
    # When ActiveSupport::Notifications is loaded, each event is also published as
    # "<name>.fiber_job" with the event's fields as the payload.
    module Instrumentation
      EVENTS = %i[enqueue perform retry dead].freeze
      # Each event's ActiveSupport::Notifications name, built once.
      NOTIFICATION_NAMES = EVENTS.to_h { |name| [name, "#{name}.fiber_job".freeze] }.freeze

      @subscribers = EVENTS.to_h { |name| [name, [].freeze] }
      @lock = Mutex.new

      class << self
        def subscribe(name, &block)
          name = event_name(name)
          raise ArgumentError, "FiberJob.on(#{name.inspect}) needs a block" unless block

          @lock.synchronize { @subscribers[name] = (@subscribers[name] + [block]).freeze }
          block
        end

        def unsubscribe(name, block)
          name = event_name(name)
          @lock.synchronize { @subscribers[name] = (@subscribers[name] - [block]).freeze }
          nil
        end

        def clear
          @lock.synchronize { @subscribers = EVENTS.to_h { |name| [name, [].freeze] } }
        end

        # Cheap check, so hot paths build no event nobody listens to: one call, and
        # ActiveSupport's notifier asked only where ActiveSupport is loaded.
        def listening?(name)
          return true unless @subscribers[name].empty?

          defined?(::ActiveSupport::Notifications) ? notifications?(name) : false
        end

        # Calls every subscriber; one that raises is logged and does not affect the job.
        def emit(name, **fields)
          event = Event.new(name: name, **fields)
          @subscribers[name].each do |subscriber|
            subscriber.call(event)
          rescue StandardError => e
            FiberJob.logger.error("FiberJob.on(#{name.inspect}) subscriber raised #{e.class}: #{e.message}")
          end
          publish(name, event) if notifications?(name)
          event
        end

        private

        def event_name(name)
          sym = name.to_s.to_sym
          return sym if EVENTS.include?(sym)

          raise ArgumentError, "no event #{name.inspect}; FiberJob.on takes one of #{EVENTS.map(&:inspect).join(", ")}"
        end

        def notifications?(name)
          defined?(::ActiveSupport::Notifications) &&
            ::ActiveSupport::Notifications.notifier.listening?(NOTIFICATION_NAMES.fetch(name))
        end

        # Start and finish times for subscribers that take them: the event's duration
        # before now (none for events without one).
        def publish(name, event)
          finished = Time.now
          ::ActiveSupport::Notifications.publish("#{name}.fiber_job", finished - (event.duration || 0), finished,
                                                 event.jid.to_s, event.to_h)
        end
      end
    end
  end
end
