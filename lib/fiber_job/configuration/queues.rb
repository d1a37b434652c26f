# frozen_string_literal: true

module FiberJob
  # Queues and their concurrency: `queues`, `concurrency`, `queue_concurrency`, and the
  # one parser of queue lists.
  class Configuration
    def concurrency=(value)
      @concurrency = positive_integer(:concurrency, value)
    end

    # A list of names; an entry may be "name:concurrency" or a one-pair Hash
    # ({ "high" => 5 }), which also sets that queue's concurrency.
    def queues=(value)
      @queues, limits = self.class.parse_queues(value)
      return if limits.empty?

      @queue_concurrency = @queue_concurrency.merge(limits)
      @default_follows &&= !limits.key?("default")
    end

    # Per-queue concurrency. Until it is set (or a "default:N" queue entry), the default
    # queue's entry is `concurrency`: `c.concurrency = 10` alone runs the default queue
    # 10 at a time, as a Sidekiq user expects, not at the { default: 2 } it starts with.
    # @return [Hash{String => Integer}]
    def queue_concurrency
      @default_follows ? @queue_concurrency.merge("default" => @concurrency) : @queue_concurrency
    end

    def queue_concurrency=(value)
      @queue_concurrency = self.class.parse_limits(value)
      @default_follows = false
    end

    # Splits a queue list (names; "name:N" strings; one-pair Hashes) into queue names
    # and the concurrency it gives some of them. The one parser of queue lists: the
    # configuration, the CLI's -q and FiberJob::Worker.new(queues:) use it.
    # @return [Array(Array<String>, Hash{String => Integer})]
    # @raise [FiberJob::ConfigurationError]
    def self.parse_queues(value, option = :queues)
      list = Array(value).flat_map { |q| q.is_a?(Hash) ? q.to_a : [q] }
      limits = {}
      names = list.map do |q|
        q, n = q if q.is_a?(Array)
        q, n = q.split(":", 2) if n.nil? && q.is_a?(String) && q.match?(/\A[^:]+:\d+\z/)
        name = queue_name(option, q)
        limits[name] = positive_integer(:"#{option} #{name}", n.is_a?(String) ? Integer(n, 10) : n) unless n.nil?
        name
      end
      raise ConfigurationError, "#{option} must list at least one queue, e.g. [:default]" if names.empty?

      [names.uniq, limits]
    end

    # Validates a { queue => concurrency } Hash. @return [Hash{String => Integer}]
    def self.parse_limits(value, option = :queue_concurrency)
      raise ConfigurationError, "#{option} must be a Hash like { default: 5 }, got #{value.inspect}" unless value.is_a?(Hash)

      value.to_h { |q, n| [queue_name(option, q), positive_integer(:"#{option}[#{q.inspect}]", n)] }
    end

    # Concurrency per queue for a worker of `queues`: `given` (name => n) first, then
    # `all` (one number for every queue), then queue_concurrency, then concurrency.
    # @return [Array<Integer>] in the order of `queues`
    def limits_for(queues, all: nil, given: {})
      positive_integer(:concurrency, all) if all
      queues.map { |q| given.fetch(q) { all || concurrency_for(q) } }
    end

    # Concurrency of one queue: its queue_concurrency entry, else `concurrency`.
    def concurrency_for(queue)
      queue_concurrency.fetch(queue.to_s) { @concurrency }
    end

    # A queue name as a String. @api private
    def self.queue_name(option, value)
      name = value.to_s
      unless (value.is_a?(Symbol) || value.is_a?(String)) && name.match?(QUEUE_NAME)
        raise ConfigurationError, "#{option}: #{value.inspect} is not a queue name (use a Symbol or String of letters, digits, _ . : -)"
      end
      name
    end

    private_class_method :queue_name
  end
end
