# frozen_string_literal: true

module FiberJob
  VERSION = "0.1.0"
end
