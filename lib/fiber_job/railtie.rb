# frozen_string_literal: true

module FiberJob
  # Rails integration: reads `config/fiber_job.yml` (ERB, optional per-environment
  # sections) when present and registers the ActiveJob adapter. An initializer calling FiberJob.configure
  # runs after the YAML and wins.
  class Railtie < ::Rails::Railtie
    initializer "fiber_job.config", before: :load_config_initializers do |app|
      path = app.root.join("config", "fiber_job.yml")
      FiberJob.config.load_file(path.to_s, env: Rails.env) if path.exist?
    end

    initializer "fiber_job.active_job" do
      ActiveSupport.on_load(:active_job) { require "fiber_job/active_job" }
    end
  end
end
