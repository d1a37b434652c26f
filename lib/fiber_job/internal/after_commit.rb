# frozen_string_literal: true

module FiberJob
  module Internal
    # Enqueue after commit: with `config.enqueue_after_commit = true` (or a class's
    # `enqueue_after_commit true`), an enqueue made inside an ActiveRecord transaction is
    # written to Redis when that transaction commits, and dropped if it rolls back; the
    # caller gets the job's id at once. Outside a transaction it is written at once.
    #
    # The enqueue waits as a record of the transaction (ActiveRecord calls
    # `committed!`/`rolledback!` on it, and hands it to the parent transaction when a
    # savepoint is released). Only a joinable transaction defers: the one a test wraps
    # around each example (transactional fixtures) is not, so tests see their jobs.
    module AfterCommit
      class << self
        # True once the setting or a class turned it on: every enqueue checks this first.
        #
        attr_accessor :used

        # Whether an enqueue of `job_class` now waits for the transaction.
        def defer?(job_class)
          return false unless used && defined?(::ActiveRecord::Base)

          on = JobSettings.enqueue_after_commit?(job_class)
          on = FiberJob.config.enqueue_after_commit if on.nil?
          on && open_transaction? ? true : false
        end

        # Runs the block when the current transaction commits (never if it rolls back).
        #
        def later(&block)
          ::ActiveRecord::Base.connection.add_transaction_record(Pending.new(block))
        end

        private

        # This thread's connection is in a transaction of the app's (checking out no
        # connection when it has none).
        def open_transaction?
          conn = ::ActiveRecord::Base.connection_pool.active_connection?
          conn && conn.transaction_open? && conn.current_transaction.joinable?
        rescue ::ActiveRecord::ConnectionNotEstablished
          false
        end
      end

      # An enqueue waiting for its transaction.
      class Pending
        def initialize(block)
          @block = block
        end

        def trigger_transactional_callbacks? = true

        def before_committed!; end

        # Called once the data is committed, also when another record's callback raised
        # (`should_run_callbacks: false`): the enqueue is due either way.
        def committed!(**)
          block = @block
          @block = nil
          block&.call
        end

        def rolledback!(**)
          @block = nil
        end
      end
    end
  end
end
