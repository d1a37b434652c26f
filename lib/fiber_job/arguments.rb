# frozen_string_literal: true

module FiberJob
  # Checks that job arguments survive a JSON round trip unchanged, so `perform`
  # receives exactly what was enqueued. Raises ArgumentError naming the first
  # offending value; nothing is enqueued then.
  module Arguments
    ALLOWED = "nil, true, false, Integer, Float, String, and Arrays or Hashes (with String keys) of them"

    module_function

    # @raise [ArgumentError]
    def check!(caller_name, args)
      args.each_with_index { |arg, i| check_value!(caller_name, arg, "argument #{i + 1}") }
    end

    def check_value!(caller_name, value, path)
      case value
      when nil, true, false, String, Integer
        nil
      when Float
        reject!(caller_name, value, path, "is not finite") unless value.finite?
      when Array
        value.each_with_index { |v, i| check_value!(caller_name, v, "#{path}[#{i}]") }
      when Hash
        value.each do |k, v|
          reject!(caller_name, k, "#{path} key #{k.inspect}", "is a #{k.class}; keys must be Strings") unless k.is_a?(String)
          check_value!(caller_name, v, "#{path}[#{k.inspect}]")
        end
      else
        reject!(caller_name, value, path, "is a #{value.class}")
      end
    end

    def reject!(caller_name, value, path, why)
      raise ArgumentError,
            "#{caller_name}: #{path} (#{value.inspect.byteslice(0, 80)}) #{why}, which does not survive JSON. " \
            "Pass only #{ALLOWED}: e.g. a String for a Symbol, time.to_f or time.iso8601 for a Time, record.id for a record."
    end
  end
end
