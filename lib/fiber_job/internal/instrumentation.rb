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

      # One event's listeners: its `FiberJob.on` subscribers (a frozen Array, replaced
      # under the module's lock, so readers take no lock) and, where
      # ActiveSupport::Notifications is loaded, the notifier's subscribers to its
      # "<name>.fiber_job". The worker holds the :perform channel itself: asking it costs
      # no Hash lookup.
      class Channel
        attr_reader :subscribers, :notification

        def initialize(name)
          @subscribers = [].freeze
          @notification = "#{name}.fiber_job".freeze
        end

        def subscribers=(list)
          @subscribers = list.freeze
        end

        def listening?
          !@subscribers.empty? || notified?
        end

        # Whether an ActiveSupport::Notifications subscriber wants this event (more
        # costly than a no-op job's whole run where ActiveSupport is loaded: the worker
        # asks it at most once a second, see Processor#performs_listened?).
        def notified?
          defined?(::ActiveSupport::Notifications) ? ::ActiveSupport::Notifications.notifier.listening?(@notification) : false
        end
      end

      CHANNELS = EVENTS.to_h { |name| [name, Channel.new(name)] }.freeze
      @lock = Mutex.new

      class << self
        def subscribe(name, &block)
          name = event_name(name)
          raise ArgumentError, "FiberJob.on(#{name.inspect}) needs a block" unless block

          channel = CHANNELS[name]
          @lock.synchronize { channel.subscribers = channel.subscribers + [block] }
          block
        end

        def unsubscribe(name, block)
          channel = CHANNELS[event_name(name)]
          @lock.synchronize { channel.subscribers = channel.subscribers - [block] }
          nil
        end

        def clear
          @lock.synchronize { CHANNELS.each_value { |channel| channel.subscribers = [] } }
        end

        # The listeners of one event (hot paths keep it).
        def channel(name)
          CHANNELS.fetch(name)
        end

        # Cheap check, so hot paths build no event nobody listens to: ActiveSupport's
        # notifier is asked only where ActiveSupport is loaded.
        def listening?(name)
          CHANNELS[name].listening?
        end

        # Calls every subscriber; one that raises is logged and does not affect the job.
        def emit(name, **fields)
          event = Event.new(name: name, **fields)
          channel = CHANNELS[name]
          channel.subscribers.each do |subscriber|
            subscriber.call(event)
          rescue StandardError => e
            FiberJob.logger.error("FiberJob.on(#{name.inspect}) subscriber raised #{e.class}: #{e.message}")
          end
          publish(channel.notification, event) if channel.notified?
          event
        end

        private

        def event_name(name)
          sym = name.to_s.to_sym
          return sym if EVENTS.include?(sym)

          raise ArgumentError, "no event #{name.inspect}; FiberJob.on takes one of #{EVENTS.map(&:inspect).join(", ")}"
        end

        # Start and finish times for subscribers that take them: the event's duration
        # before now (none for events without one).
        def publish(notification, event)
          finished = Time.now
          ::ActiveSupport::Notifications.publish(notification, finished - (event.duration || 0), finished,
                                                 event.jid.to_s, event.to_h)
        end
      end
    end
  end
end
