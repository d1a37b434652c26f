# frozen_string_literal: true

module FiberJob
  module Middleware
    # An ordered list of middleware classes, Sidekiq-style. Each entry is a class
    # (with optional constructor arguments); a fresh instance is made for every call,
    # so middleware may keep per-job state in instance variables.
    #
    # Client middleware: `call(job_class, payload, queue)`; yield to enqueue, return
    # without yielding to stop the job (it is not enqueued; perform_async returns nil).
    # Server middleware: `call(job, payload, queue)`; yield to run `perform`. An
    # exception raised there is a failure of that job (retried like any other).
    class Chain
      include Enumerable

      Entry = Struct.new(:klass, :args) do
        def make
          klass.new(*args)
        end
      end

      def initialize
        @entries = []
      end

      # The entries: one Array for the chain's life, only ever changed in place, so the
      # processor keeps it and asks it `empty?` on every job without a call to the chain.
      # Internal.
      def list = @entries

      # Appends `klass` (moving it to the end if present). @return [self]
      def add(klass, *args)
        check!(klass)
        remove(klass)
        @entries << Entry.new(klass, args)
        self
      end

      # Puts `klass` first. @return [self]
      def prepend(klass, *args)
        check!(klass)
        remove(klass)
        @entries.unshift(Entry.new(klass, args))
        self
      end

      def remove(klass)
        @entries.reject! { |e| e.klass == klass }
        self
      end

      # Inserts `klass` before `existing` (at the front when `existing` is absent).
      def insert_before(existing, klass, *args)
        check!(klass)
        remove(klass)
        at = @entries.index { |e| e.klass == existing } || 0
        @entries.insert(at, Entry.new(klass, args))
        self
      end

      # Inserts `klass` after `existing` (at the end when `existing` is absent).
      def insert_after(existing, klass, *args)
        check!(klass)
        remove(klass)
        at = @entries.index { |e| e.klass == existing }
        @entries.insert(at ? at + 1 : @entries.size, Entry.new(klass, args))
        self
      end

      def exists?(klass)
        @entries.any? { |e| e.klass == klass }
      end
      alias include? exists?

      def empty?
        @entries.empty?
      end

      def clear
        @entries.clear
        self
      end

      # The middleware classes, in order.
      def each(&block)
        @entries.map(&:klass).each(&block)
      end

      # Runs `args` through every middleware, innermost the block.
      # @return [Array(Boolean, Object)] whether the block ran, and its value
      def invoke(*args)
        ran = false
        value = nil
        chain = @entries.map(&:make)
        step = lambda do
          if chain.empty?
            ran = true
            value = yield
          else
            chain.shift.call(*args, &step)
          end
        end
        step.call
        [ran, value]
      end

      private

      def check!(klass)
        return if klass.is_a?(Class) && klass.method_defined?(:call)

        raise ArgumentError, "middleware must be a class with an instance method #call(…), got #{klass.inspect}"
      end
    end
  end
end
