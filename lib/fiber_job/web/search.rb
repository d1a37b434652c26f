# frozen_string_literal: true

module FiberJob
  class Web
    # Search of a queue, the scheduled jobs, the retries or the dead set (`?q=`): a job
    # matches when the query is its jid, is part of its class name (an ActiveJob's
    # wrapped class too), or is part of its arguments as JSON. Server-side and bounded:
    # it reads at most SCAN jobs of the list, newest first, a page at a time.
    module Search
      SCAN = 5_000
      PAGE = 500
      MAX_QUERY = 200

      module_function

      # @param source [#call] (offset, limit) → jobs (payload Hashes)
      # @return [[Array<Hash>, Integer, Boolean]] the matches, how many jobs were read,
      #   and whether the scan stopped at SCAN with more left
      def run(query, source)
        matches = []
        read = 0
        while read < SCAN
          page = source.call(read, [PAGE, SCAN - read].min)
          page.each { |job| matches << job if match?(job, query) }
          read += page.size
          return [matches, read, false] if page.size < PAGE
        end
        [matches, read, true]
      end

      def match?(job, query)
        return true if job["jid"] == query

        [job["class"], job["wrapped"]].any? { |c| c.is_a?(String) && c.downcase.include?(query.downcase) } ||
          JSON.generate(job["args"] || []).include?(query)
      rescue JSON::GeneratorError
        false
      end
    end
  end
end
