# frozen_string_literal: true

module FiberJob
  # Builds job payloads and hands them to the Rust client. The payload uses Sidekiq's
  # field names (class, args, jid, queue, created_at, enqueued_at, retry_count).
  module Client
    module_function

    # Enqueues one job now. @return [String] the job id
    def push(job_class, args, queue: job_class.queue_name)
      fast = FiberJob.client._enqueue(class_name(job_class), queue, [args])
      return fast.first if fast

      payload = build(job_class, args, queue)
      FiberJob.client._push(queue, [JSON.generate(payload)])
      payload["jid"]
    end

    # Enqueues many jobs of one class in one round trip. @return [Array<String>] job ids
    def push_bulk(job_class, args_list, queue: job_class.queue_name)
      unless args_list.is_a?(Array) && args_list.all?(Array)
        raise ArgumentError, "#{job_class}.perform_bulk takes an Array of argument Arrays, e.g. [[1, \"a\"], [2, \"b\"]]"
      end

      fast = FiberJob.client._enqueue(class_name(job_class), queue, args_list)
      return fast if fast

      payloads = args_list.map { |args| build(job_class, args, queue) }
      FiberJob.client._push(queue, payloads.map { |p| JSON.generate(p) }) unless payloads.empty?
      payloads.map { |p| p["jid"] }
    end

    # Stores a job to run at `at` (epoch seconds); a time not in the future runs now.
    # @return [String] the job id
    def schedule(job_class, at, args, queue: job_class.queue_name)
      payload = build(job_class, args, queue)
      if at <= Time.now.to_f
        FiberJob.client._push(queue, [JSON.generate(payload)])
      else
        payload["at"] = at
        FiberJob.client._schedule(queue, at, JSON.generate(payload))
      end
      payload["jid"]
    end

    # The fast path (`_enqueue`, in Rust) writes the payload from the arguments when all
    # of them are plainly JSON-native; otherwise it returns nil and `build` below checks
    # them (raising the ArgumentError that names the bad one) and builds it in Ruby.
    def build(job_class, args, queue)
      name = class_name(job_class)
      Arguments.check!("#{name}.perform_async", args)
      now = Time.now.to_f
      {
        "class" => name,
        "args" => args,
        "jid" => SecureRandom.hex(12),
        "queue" => queue,
        "created_at" => now,
        "enqueued_at" => now,
        "retry_count" => 0
      }
    end

    def class_name(job_class)
      name = job_class.name
      raise ArgumentError, "#{job_class.inspect} has no name; define job classes with a constant name" if name.nil?

      name
    end
  end
end
