# frozen_string_literal: true

# A strict reader of the Prometheus text exposition format (0.0.4), for specs: every
# line must be a HELP, a TYPE or a sample; each family's HELP and TYPE come once,
# before its samples; sample names belong to a declared family (counters end in
# _total; a histogram's are its name with _bucket (with an le label), _sum, _count); label values are properly quoted and escaped; no series appears twice; the
# text ends with a newline. Returns { [name, labels] => value }.
module PrometheusFormat
  NAME = /[a-zA-Z_:][a-zA-Z0-9_:]*/.freeze
  LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"/.freeze
  SAMPLE = /\A(#{NAME})(?:\{((?:#{LABEL})(?:,#{LABEL})*,?)?\})? (\S+)(?: (-?\d+))?\z/.freeze
  TYPES = %w[counter gauge histogram summary untyped].freeze

  module_function

  def parse!(text)
    raise "exposition must end with a newline" unless text.end_with?("\n")

    helps = {}
    types = {}
    seen_samples = {}
    out = {}
    text.each_line(chomp: true).with_index(1) do |line, no|
      case line
      when /\A# HELP (#{NAME}) (.*)\z/
        name = Regexp.last_match(1)
        raise "line #{no}: second HELP for #{name}" if helps.key?(name)
        raise "line #{no}: HELP for #{name} after its samples" if seen_samples.key?(name)

        helps[name] = Regexp.last_match(2)
      when /\A# TYPE (#{NAME}) (\w+)\z/
        name = Regexp.last_match(1)
        type = Regexp.last_match(2)
        raise "line #{no}: unknown type #{type}" unless TYPES.include?(type)
        raise "line #{no}: second TYPE for #{name}" if types.key?(name)
        raise "line #{no}: TYPE for #{name} after its samples" if seen_samples.key?(name)
        raise "line #{no}: counter #{name} must end in _total" if type == "counter" && !name.end_with?("_total")

        types[name] = type
      when /\A#/
        raise "line #{no}: comment that is neither HELP nor TYPE: #{line}"
      when SAMPLE
        sample = Regexp.last_match(1)
        labels = labels(Regexp.last_match(2), no)
        value = Float(Regexp.last_match(-2)) rescue raise("line #{no}: bad value #{Regexp.last_match(-2).inspect}")
        name = family_of(sample, types)
        raise "line #{no}: histogram bucket #{sample} has no le label" if sample.end_with?("_bucket") && types[name] == "histogram" && !labels.key?("le")
        raise "line #{no}: sample #{name} has no TYPE" unless types.key?(name)
        raise "line #{no}: sample #{name} has no HELP" unless helps.key?(name)
        raise "line #{no}: counter #{name} is negative" if types[name] == "counter" && value.negative?

        key = [sample, labels]
        raise "line #{no}: duplicate series #{key.inspect}" if out.key?(key)

        seen_samples[name] = true
        out[key] = value
      else
        raise "line #{no}: not a valid exposition line: #{line.inspect}"
      end
    end
    out
  end

  # A histogram's samples are its name with _bucket, _sum and _count.
  def family_of(sample, types)
    base = sample.sub(/_(bucket|sum|count)\z/, "")
    base != sample && types[base] == "histogram" ? base : sample
  end

  def labels(text, no)
    return {} if text.nil? || text.empty?

    pairs = text.scan(LABEL).map { |k, v| [k, v.gsub(/\\(["\\n])/) { Regexp.last_match(1) == "n" ? "\n" : Regexp.last_match(1) }] }
    names = pairs.map(&:first)
    raise "line #{no}: repeated label" unless names.uniq.size == names.size

    pairs.to_h
  end
end
