# frozen_string_literal: true

# The load mix's limits, shared by the job classes (jobs.rb) and the checker.
module Chaos
  LIMIT_TO = 2          # ChaosLimited: at most this many of a key at once
  THROTTLE = 5          # ChaosThrottled: at most this many starts of a key…
  THROTTLE_PER = 1.0    # …per this many seconds
  ITEMS = 30            # ChaosIterable: items per job
  DOOMED_RETRIES = 2    # ChaosDoomed: retries before the dead set
  CRON_EVERY = 3
  CRON = "*/#{CRON_EVERY} * * * * *"
end
