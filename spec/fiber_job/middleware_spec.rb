# frozen_string_literal: true

class MwA
  def call(*, &) = (Ran.record(:a); yield)
end

class MwB
  def initialize(tag = :b) = (@tag = tag)
  def call(*, &) = (Ran.record(@tag); yield)
end

class MwC
  def call(*, &) = (Ran.record(:c); yield)
end

class MwStop
  def call(*) = Ran.record(:stop)
end

# The chain itself (spec/operations/middleware_spec.rb runs it around real jobs).
RSpec.describe FiberJob::Middleware::Chain do
  before { Ran.reset! }

  let(:chain) { described_class.new }

  def order = Ran.all.flatten

  it "keeps its entries in order through add, prepend, insert_before and insert_after" do
    chain.add(MwA)
    chain.prepend(MwB, :first)
    chain.insert_after(MwA, MwC)
    expect(chain.invoke(1) { :done }).to eq([true, :done])
    expect(order).to eq(%i[first a c])
    Ran.reset!
    chain.insert_before(MwC, MwB, :moved) # a class is in a chain once: this moves it
    chain.invoke(1) { :done }
    expect(order).to eq(%i[a moved c])
  end

  it "stops when an entry does not yield, and empties by remove and clear" do
    chain.add(MwA)
    chain.add(MwStop)
    ran, = chain.invoke(1) { Ran.record(:inner) }
    expect(ran).to be(false)
    expect(order).to eq(%i[a stop])
    chain.remove(MwStop)
    expect(chain.exists?(MwStop)).to be(false)
    chain.clear
    expect(chain.empty?).to be(true)
  end

  it "refuses what is not a middleware class" do
    expect { chain.add(Object.new) }.to raise_error(ArgumentError, /middleware must be a class/)
  end
end
