# frozen_string_literal: true

# Pins the version of a gem with several installed, for this process and (through
# RUBYOPT) every Ruby process the specs start: FIBER_JOB_ASYNC_VERSION="~> 1.30" runs the
# fiber executor on async 1.x where async 2.x is installed too. Unset, RubyGems takes
# the newest installed.
pins = { "async" => "FIBER_JOB_ASYNC_VERSION" }.filter_map do |name, variable|
  requirement = ENV.fetch(variable, "")
  [name, requirement] unless requirement.empty?
end
pins.each { |name, requirement| gem name, requirement }
if pins.any? && !ENV.fetch("RUBYOPT", "").include?(__FILE__)
  ENV["RUBYOPT"] = "#{ENV.fetch("RUBYOPT", "")} -r#{__FILE__}".strip
end
