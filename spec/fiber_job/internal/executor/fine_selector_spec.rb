# frozen_string_literal: true

require "async"
require "fiber_job/internal/executor/fine_selector"

RSpec.describe FiberJob.const_get(:Internal)::Executor::FineSelector do
  let(:clock) { -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) } }

  around do |example|
    # The selector of async 1.x's reactor (nio4r); async 2.x times its own waits.
    next skip("async #{Async::VERSION} has no nio4r reactor: FineSelector is for async 1.x") unless defined?(NIO::Selector)

    @selector = described_class.new(NIO::Selector.new)
    example.run
  ensure
    @selector&.close
  end

  it "waits until the timer, not to the next whole millisecond" do
    started = clock.call
    expect(@selector.select(0.0057)).to be_nil.or(be_empty)
    expect(clock.call - started).to be >= 0.0057
  end

  it "waits the whole interval when the reactor ran since its last select (libev's cached clock)" do
    @selector.select(0)
    busy = clock.call
    nil while clock.call - busy < 0.003
    started = clock.call
    @selector.select(0.0057)
    expect(clock.call - started).to be >= 0.0057
  end

  it "returns at once when woken from another thread during a long wait" do
    waker = Thread.new { sleep 0.05; @selector.wakeup }
    started = clock.call
    @selector.select(5.0)
    expect(clock.call - started).to be < 1.0
  ensure
    waker&.join
  end

  it "returns at once when I/O is ready, with the monitors" do
    reader, writer = IO.pipe
    monitor = @selector.register(reader, :r)
    writer.write("x")
    started = clock.call
    expect(@selector.select(5.0)).to eq([monitor])
    expect(clock.call - started).to be < 1.0
  ensure
    [reader, writer].each(&:close)
  end

  it "runs an async 1.x reactor: timers and I/O wake its fibers" do
    reactor = described_class.reactor
    skip "async 2.x selects precisely itself" unless reactor
    reader, writer = IO.pipe
    got = nil
    reactor.run do |task|
      task.async { got = reader.wait_readable && reader.read_nonblock(1) }
      task.async { sleep 0.0123; writer.write("y") }
    end
    reactor.close
    expect(got).to eq("y")
  ensure
    [reader, writer].each { |io| io&.close }
  end
end
