# frozen_string_literal: true

module FiberJob
  module Internal
    # Checks that job arguments survive a JSON round trip unchanged, so `perform`
    # receives exactly what was enqueued. Raises ArgumentError naming the first
    # offending value; nothing is enqueued then.
    module Arguments
      ALLOWED = "nil, true, false, Integer, Float, String, and Arrays or Hashes (with String keys) of them"
      # Integers the engine carries exactly: 64 bits, signed or unsigned. Beyond them JSON
      # readers (the engine's among them) turn numbers into Floats.
      INTEGER_RANGE = (-2**63..(2**64) - 1).freeze
      # Deepest nesting of Arrays and Hashes inside one argument. JSON readers stop at
      # 100 levels for the whole payload (Ruby's JSON among them); this leaves room.
      MAX_DEPTH = 64

      module_function

      # @raise [ArgumentError]
      def check!(caller_name, args)
        args.each_with_index { |arg, i| check_value!(caller_name, arg, "argument #{i + 1}", 0, nil) }
      end

      # `parents`: the Arrays and Hashes on the way to `value` (to find one that
      # contains itself), nil at the top.
      def check_value!(caller_name, value, path, depth, parents)
        case value
        when nil, true, false then nil
        when String then check_string!(caller_name, value, path)
        when Integer
          reject!(caller_name, value, path, "is outside 64 bits (#{INTEGER_RANGE})", "pass it as a String") unless INTEGER_RANGE.cover?(value)
        when Float
          reject!(caller_name, value, path, "is not finite") unless value.finite?
        when Array, Hash then check_container!(caller_name, value, path, depth, parents)
        else
          reject!(caller_name, value, path, "is a #{value.class}")
        end
      end

      def check_container!(caller_name, value, path, depth, parents)
        parents ||= {}.compare_by_identity
        reject!(caller_name, value, path, "contains itself", "pass a copy without the cycle") if parents.key?(value)
        if depth >= MAX_DEPTH
          reject!(caller_name, value, path, "nests Arrays and Hashes deeper than #{MAX_DEPTH} levels", "flatten it")
        end
        parents[value] = true
        if value.is_a?(Array)
          value.each_with_index { |v, i| check_value!(caller_name, v, "#{path}[#{i}]", depth + 1, parents) }
        else
          value.each do |k, v|
            reject!(caller_name, k, "#{path} key #{k.inspect}", "is a #{k.class}; keys must be Strings") unless k.is_a?(String)
            check_string!(caller_name, k, "#{path} key")
            check_value!(caller_name, v, "#{path}[#{k.inspect}]", depth + 1, parents)
          end
        end
        parents.delete(value)
      end

      # JSON text is UTF-8: a String must be text that converts to it.
      def check_string!(caller_name, value, path)
        return if value.ascii_only? && value.valid_encoding?

        encoding = value.encoding
        if encoding == Encoding::BINARY
          reject!(caller_name, value, path, "is binary data (ASCII-8BIT)", "pass Base64.strict_encode64(data) and decode it in perform")
        elsif !value.valid_encoding?
          reject!(caller_name, value, path, "is not valid #{encoding}", "fix or scrub the text (String#scrub)")
        elsif encoding != Encoding::UTF_8
          begin
            value.encode(Encoding::UTF_8)
          rescue EncodingError
            reject!(caller_name, value, path, "has #{encoding} characters that UTF-8 lacks", "convert it to UTF-8")
          end
        end
      end

      def reject!(caller_name, value, path, why, fix = nil)
        shown = value.is_a?(Array) || value.is_a?(Hash) ? "a #{value.class} of #{value.size}" : value.inspect.byteslice(0, 80).scrub
        raise ArgumentError,
              "#{caller_name}: #{path} (#{shown}) #{why}, which does not survive JSON. " \
              "#{fix ? "#{fix[0].upcase}#{fix[1..]}. " : ""}Pass only #{ALLOWED}: e.g. a String for a Symbol, " \
              "time.to_f or time.iso8601 for a Time, record.id for a record."
      end
    end
  end
end
