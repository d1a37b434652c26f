# frozen_string_literal: true

require "json"
require "ripper"

# The manual's examples as something the suite can run (spec/docs/examples_spec.rb).
# Two halves, one per process:
#
# - DocExamples reads every ```ruby block of README.md and docs/guides/*.md, with the
#   line it starts on and the `<!-- example: … -->` comment just before its fence, and
#   turns a block into a plan for a child process; it also reads the Markdown links.
# - DocExamples::Child runs in that child: fiber_job loaded and pointed at the spec's
#   redis-server, the stand-in app (APP) defined, the block evaluated under its Markdown
#   file and line (so an error names them). Then a worker runs whatever the block left
#   to run, and the child prints what happened on one line (RESULT).
#
# Directives in the comment before a fence, separated by ";":
#   name NAME            later blocks (any file) may say `after NAME`
#   after NAME, NAME     those blocks run first, each under its own file and line
#   skip: REASON         not run; the spec shows it as pending with the reason
#   raises CLASS         the block must raise CLASS, with the message its
#                        `# => CLASS: message` comment shows ("…" stands for anything)
#   worker               the block runs a worker (Worker#start blocks): the spec sends
#                        TERM once the worker started and its queues are empty
#   rackup PATH PATH     the block is a config.ru: each PATH must answer 200
#   rspec                the block is an RSpec file: it runs, and its examples pass
#   env NAME=VALUE       an environment variable the block reads (e.g. a provider's)
#   active_record        a SQLite database with a users table; User is its model
#
# Without a directive: `code  # => literal`, where the comment is only a Ruby literal
# (true, nil, 2, "text", [...], {...}; "…" in a String stands for anything), checks that
# the code returns it. Blocks using durations (`1.hour`) or `Date.tomorrow` get
# ActiveSupport's core extensions, as in a Rails app; blocks naming ApplicationJob get
# ActiveJob with the :fiber_job adapter and an ApplicationJob.
module DocExamples
  ROOT = File.expand_path("../..", __dir__)
  HELPER = __FILE__
  # Seconds one example's process may take (a worker's start and stop included).
  CHILD_LIMIT = 40
  RESULT = "DOC-EXAMPLE-RESULT"
  ERROR = "DOC-EXAMPLE-ERROR"
  MARKER = /\A\s*<!--\s*example:\s*(.*?)\s*-->\s*\z/.freeze
  FENCE = /\A(\s*)(```+|~~~+)\s*([\w+-]*)/.freeze
  # Blocks that need ActiveSupport's core extensions (a Rails app has them).
  ACTIVE_SUPPORT = /\b\d+\.(?:seconds?|minutes?|hours?|days?|weeks?)\b|Date\.(?:tomorrow|yesterday)|beginning_of_day/.freeze

  # One fenced ```ruby block: where it is, its code (indentation of a list item
  # removed), its directives, and what is wrong with them.
  Block = Struct.new(:file, :line, :code, :name, :after, :skip, :raises, :worker, :rackup, :rspec, :env,
                     :active_record, :errors, keyword_init: true) do
    def where = "#{file}:#{line}"
  end

  module_function

  # The manual: the README, then the guides. Paths relative to the repository.
  def files
    ["README.md"] + Dir[File.join(ROOT, "docs/guides/*.md")].sort.map { |f| f.delete_prefix("#{ROOT}/") }
  end

  def read(file) = File.read(File.join(ROOT, file))

  # Every fenced block of `file`: [language, first code line (1-based), code, marker].
  def fences(file)
    lines = read(file).lines
    found = []
    i = 0
    while i < lines.size
      open = lines[i].match(FENCE)
      unless open
        i += 1
        next
      end
      indent, fence, lang = open.captures
      close = (i + 1...lines.size).find { |j| lines[j].match?(/\A\s*#{Regexp.escape(fence)}\s*\z/) } || lines.size
      code = lines[i + 1...close].map { |l| l.start_with?(indent) ? l.delete_prefix(indent) : l.lstrip }.join
      before = lines[0...i].reverse.find { |l| !l.strip.empty? }
      found << [lang, i + 2, code, before&.match(MARKER)&.[](1)]
      i = close + 1
    end
    found
  end

  # Every ```ruby block of the manual, with its directives parsed.
  def blocks
    @blocks ||= files.flat_map do |file|
      fences(file).filter_map { |lang, line, code, marker| lang == "ruby" && parse(file, line, code, marker) }
    end.tap { |all| check_names(all) }
  end

  def parse(file, line, code, marker)
    block = Block.new(file: file, line: line, code: code, after: [], rackup: [], env: {}, errors: [])
    (marker || "").split(";").map(&:strip).reject(&:empty?).each { |directive| apply(block, directive) }
    block
  end

  def apply(block, directive)
    case directive
    when /\Aname\s+(\S+)\z/ then block.name = Regexp.last_match(1)
    when /\Aafter\s+(.+)\z/ then block.after.concat(Regexp.last_match(1).split(/[\s,]+/))
    when /\Askip\s*(?::|—|-)\s*(\S.*)\z/ then block.skip = Regexp.last_match(1)
    when /\Araises\s+([\w:]+)\z/ then block.raises = Regexp.last_match(1)
    when "worker" then block.worker = true
    when /\Arackup\s+(.+)\z/ then block.rackup.concat(Regexp.last_match(1).split)
    when "rspec" then block.rspec = true
    when /\Aenv\s+(\w+)=(\S*)\z/ then block.env[Regexp.last_match(1)] = Regexp.last_match(2)
    when "active_record" then block.active_record = true
    else block.errors << "unknown example directive #{directive.inspect} (a skip needs its reason: `skip: why`)"
    end
  end

  def check_names(all)
    named = all.select(&:name).group_by(&:name)
    named.each { |name, list| list.each { |b| b.errors << "name #{name} is also used at #{list.first.where}" } if list.size > 1 }
    all.each do |block|
      block.after.each { |name| block.errors << "after #{name}: no block is named so" unless named.key?(name) }
    end
  end

  # The blocks to run before `block` (its `after`s, theirs first), each once.
  def setup_for(block, seen = [])
    block.after.each do |name|
      dep = blocks.find { |b| b.name == name }
      next if dep.nil? || seen.include?(dep)

      setup_for(dep, seen)
      seen << dep
    end
    seen
  end

  # What the child process needs to run `block` against the Redis at `redis_url`.
  def plan(block, redis_url:)
    setup = setup_for(block)
    all_code = (setup.map(&:code) + [block.code]).join
    {
      "redis_url" => redis_url,
      "setup" => setup.map { |b| segment(b) },
      "main" => segment(block),
      "raises" => block.raises,
      "message" => block.raises && documented_message(block.code, block.raises),
      "rackup" => block.rackup,
      "rspec" => block.rspec,
      "active_support" => all_code.match?(ACTIVE_SUPPORT),
      "active_job" => all_code.include?("ApplicationJob"),
      "active_record" => (setup + [block]).any?(&:active_record)
    }
  end

  def segment(block) = { "file" => block.file, "line" => block.line, "code" => with_checks(block.code) }

  # The message a `# => Class: message` comment shows (continued on `#   ` lines).
  def documented_message(code, klass)
    lines = code.lines
    start = lines.index { |l| l.include?("# => #{klass}: ") }
    return nil unless start

    message = [lines[start].split("# => #{klass}: ", 2).last.strip]
    lines[start + 1..].each do |l|
      break unless l =~ /\A\s*#\s{2,}(\S.*?)\s*\z/

      message << Regexp.last_match(1).strip
    end
    message.join(" ")
  end

  # `code  # => literal` lines become checks of what the code returns; line numbers
  # stay as they are.
  def with_checks(code)
    code.lines.map.with_index do |line, i|
      code_part, expected = split_result_comment(line)
      next line unless expected

      indent = line[/\A\s*/]
      "#{indent}DocExamples::Child.check((#{code_part.strip}), #{expected.dump}, #{i})\n"
    end.join
  end

  # [code, literal] when `line` is a complete expression followed by `# => literal`.
  def split_result_comment(line)
    comment = Ripper.lex(line).find { |(_, _), type, text| type == :on_comment && text.start_with?("# =>") }
    return nil unless comment

    column = comment[0][1]
    code_part = line.byteslice(0, column)
    expected = comment[2].delete_prefix("# =>").strip
    return nil if code_part.strip.empty? || !Ripper.sexp(code_part) || !literal?(expected)

    [code_part, expected]
  end

  LITERAL_TOKENS = %i[on_int on_float on_tstring_beg on_tstring_content on_tstring_end on_lbracket on_rbracket
                      on_lbrace on_rbrace on_comma on_sp on_label on_symbeg on_ident on_op on_kw].freeze

  # A Ruby literal and nothing else: no calls, no prose after it.
  def literal?(text)
    return false if text.empty? || Ripper.sexp(text).nil?

    tokens = Ripper.lex(text)
    tokens.each_with_index.all? do |((_, _), type, tok), i|
      next false unless LITERAL_TOKENS.include?(type)
      next %w[true false nil].include?(tok) if type == :on_kw
      next %w[=> -].include?(tok) if type == :on_op
      next tokens[i - 1][1] == :on_symbeg if type == :on_ident

      true
    end
  end

  # --- links -------------------------------------------------------------------

  # Every relative link of `file`: [line, target path (repository-relative), anchor].
  def links(file)
    dir = File.dirname(file)
    in_fence = false
    read(file).lines.each_with_index.flat_map do |line, i|
      in_fence = !in_fence if line.match?(/\A\s*(```|~~~)/)
      next [] if in_fence

      line.gsub(/`[^`]*`/, "").scan(/\]\(([^)\s]+)\)/).flatten.filter_map do |target|
        next if target.match?(%r{\A[a-z]+:}i)

        path, anchor = target.split("#", 2)
        resolved = path.empty? ? file : File.expand_path(path, File.join(ROOT, dir)).delete_prefix("#{ROOT}/")
        [i + 1, resolved, anchor]
      end
    end
  end

  # GitHub's anchors for the headings of a Markdown file.
  def anchors(file)
    seen = Hash.new(0)
    in_fence = false
    read(file).lines.filter_map do |line|
      in_fence = !in_fence if line.match?(/\A\s*(```|~~~)/)
      next if in_fence || !line.start_with?("#")

      slug = line.sub(/\A#+\s*/, "").strip.downcase.gsub(/[^\p{Word}\- ]/, "").tr(" ", "-")
      n = seen[slug]
      seen[slug] += 1
      n.zero? ? slug : "#{slug}-#{n}"
    end
  end

  # What runs in the child process (see the header).
  class Child
    # A Redis URL an example writes for a local Redis: the spec's redis-server instead.
    LOCAL_REDIS = %r{\Aredis://(?:localhost|127\.0\.0\.1)(?::6379)?(?:/\d+)?/?\z}.freeze
    # How long a worker may take to run what a block enqueued.
    DRAIN_LIMIT = 15

    def self.main(plan_file)
      $stdout.sync = true
      require "fiber_job"
      new(JSON.parse(File.read(plan_file))).run
    end

    @checks = 0
    class << self
      attr_accessor :checks

      # A `code  # => literal` line: the value must be the literal ("…" in a String
      # stands for anything).
      def check(value, expected_source, _index)
        expected = TOPLEVEL_BINDING.eval(expected_source)
        unless matches?(value, expected)
          raise "#{value.inspect} was returned, the comment says # => #{expected_source}"
        end

        self.checks += 1
        value
      end

      def matches?(value, expected)
        case expected
        when String
          return value == expected unless expected.include?("…")

          value.is_a?(String) && value.match?(/\A#{expected.split("…", -1).map { |p| Regexp.escape(p) }.join(".*")}\z/m)
        when Array
          value.is_a?(Array) && value.size == expected.size && value.zip(expected).all? { |v, e| matches?(v, e) }
        when Hash
          value.is_a?(Hash) && value.keys == expected.keys && expected.all? { |k, e| matches?(value[k], e) }
        else value == expected
        end
      end
    end

    def initialize(plan)
      @plan = plan
      @test_url = plan.fetch("redis_url")
    end

    def run
      point_local_redis_at_the_spec
      load_frameworks
      TOPLEVEL_BINDING.eval(APP, __FILE__, APP_LINE)
      @plan["setup"].each { |segment| evaluate(segment) }
      result = { "raised" => run_main }
      result["rack"] = rack_statuses if @plan["rackup"].any?
      result["rspec"] = run_rspec if @plan["rspec"]
      result.merge!(drain)
      result["checks"] = Child.checks
      report(RESULT, result)
      # The worker threads are done with; the process has nothing left to flush.
      $stdout.flush
      exit!(0)
    rescue Exception => e # rubocop:disable Lint/RescueException -- reported, whatever it is
      report(ERROR, { "class" => e.class.name, "message" => e.message, "where" => where(e),
                      "backtrace" => (e.backtrace || []).first(12) })
      $stdout.flush
      exit!(1)
    end

    private

    def report(tag, hash)
      puts "#{tag} #{JSON.generate(hash)}"
    end

    # The first line of the manual in the backtrace.
    def where(error)
      (error.backtrace || []).find { |l| l.match?(/\A(README\.md|docs\/)/) }
    end

    def evaluate(segment)
      if @plan["rackup"].any? && segment.equal?(@plan["main"])
        code = segment["code"]
        file = segment["file"]
        line = segment["line"]
        @rack_app = Rack::Builder.new { instance_eval(code, file, line) }.to_app
      else
        TOPLEVEL_BINDING.eval(segment["code"], segment["file"], segment["line"])
      end
    end

    # Runs the block; with `raises`, checks the error it must raise.
    def run_main
      evaluate(@plan["main"])
      raise "#{@plan["main"]["file"]}:#{@plan["main"]["line"]}: expected #{@plan["raises"]}, nothing was raised" if @plan["raises"]

      nil
    rescue Exception => e # rubocop:disable Lint/RescueException -- compared with what the block says
      raise unless @plan["raises"] && e.is_a?(Object.const_get(@plan["raises"]))

      expected = @plan["message"]
      if expected && !Child.matches?(e.message.split.join(" "), expected.split.join(" "))
        raise "#{e.class} says #{e.message.inspect}; the example shows #{expected.inspect}"
      end

      e.class.name
    end

    # Examples write the usual local Redis; they get the spec's redis-server.
    def point_local_redis_at_the_spec
      test_url = @test_url
      FiberJob::Configuration.prepend(Module.new do
        define_method(:redis_url=) { |url| super(url.to_s.match?(LOCAL_REDIS) ? test_url : url) }
      end)
      FiberJob.reset!
    end

    def load_frameworks
      require "rspec/core" if @plan["rspec"]
      require "rack" if @plan["rackup"].any?
      require "active_support/all" if @plan["active_support"] || @plan["active_job"] || @plan["active_record"]
      if @plan["active_job"]
        require "active_job"
        require "fiber_job/active_job"
        ActiveJob::Base.queue_adapter = :fiber_job
        ActiveJob::Base.logger = Logger.new($stdout, level: :warn)
      end
      return unless @plan["active_record"]

      require "active_record"
      ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: File.join(Dir.pwd, "app.sqlite3"))
      ActiveRecord::Migration.verbose = false
      ActiveRecord::Schema.define { create_table(:users) { |t| t.string :email } }
    end

    def rack_statuses
      require "rack/mock"
      @plan["rackup"].to_h do |path|
        status = Rack::MockRequest.new(@rack_app).get(path).status
        raise "GET #{path} answered #{status}, not 200" unless status == 200

        [path, status]
      end
    end

    def run_rspec
      require "rspec/core"
      status = RSpec::Core::Runner.run(%w[--format progress], $stdout, $stdout)
      count = RSpec.world.example_count(RSpec.world.ordered_example_groups)
      raise "the example's RSpec file has no examples" if count.zero?
      raise "the example's RSpec file failed" unless status.zero?

      count
    end

    def test_redis?
      config = FiberJob.config
      config.redis_url == @test_url && config.redis_sentinels.empty? && config.redis_cluster.empty?
    end

    # Runs what the block enqueued with a worker of this process, then reports the
    # totals: an example whose jobs fail, or never finish, is a broken example.
    def drain
      return { "drain" => "not the spec's Redis" } unless test_redis?

      ran = work_left? ? run_worker : "nothing to run"
      totals = FiberJob::Queue.totals
      { "drain" => ran, "processed" => totals[:processed], "failed" => totals[:failed], "dead" => totals[:dead] }
    end

    def run_worker
      worker = FiberJob::Worker.new(queues: FiberJob::Queue.names)
      thread = Thread.new { worker.start }
      deadline = now + DRAIN_LIMIT
      idle_since = nil
      while now < deadline
        raise "the worker stopped: #{thread.value.inspect}" unless thread.alive?

        idle_since = work_left? ? nil : (idle_since || now)
        return "ran" if idle_since && now - idle_since > 0.3

        sleep 0.02
      end
      "still running after #{DRAIN_LIMIT}s"
    end

    def work_left?
      FiberJob::Queue.metrics.values.any? { |m| (m[:size] + m[:held] + m[:processing] + m[:limited]).positive? } ||
        FiberJob::Queue.scheduled_jobs(limit: 1).any? { |job| job["at"].to_f < Time.now.to_f + 2 }
    end

    def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # The app the examples are written in: the models, mailers and services they call,
  # as small stand-ins that remember what they were asked.
  APP_LINE = __LINE__ + 2
  APP = <<~'RUBY'
    module AppLog
      CALLS = []
      def self.record(*call) = CALLS << call
    end

    if defined?(ActiveRecord::Base)
      class User < ActiveRecord::Base; end
    else
      User = Struct.new(:id, :email) do
        def self.find(id) = new(id, "user#{id}@example.com")
      end
    end
    Account = Struct.new(:id) do
      def self.find(id) = new(id)
      def order_ids = (1..250).map { |n| id * 1000 + n }
    end
    Order = Struct.new(:id) do
      def self.find(id) = new(id)
      def backfill! = AppLog.record(:backfill, id)
    end
    Import = Struct.new(:id) do
      def self.find(id) = new(id)
      def rows = (1..20).map { |n| { "import_id" => id, "row" => n } }
      def finished!(total = nil) = AppLog.record(:import_finished, id, total)
    end
    Mail = Struct.new(:to, :subject) do
      def deliver_now = AppLog.record(:mail, to, subject)
    end
    module UserMailer
      def self.notification(user, message) = Mail.new(user.email, message)
      def self.welcome(user) = Mail.new(user.email, "Welcome")
    end
    module Report
      def self.generate_daily = AppLog.record(:daily_report)
      def self.generate(report_id) = AppLog.record(:report, report_id)
    end
    module Accounts
      def self.sync(account_id) = AppLog.record(:sync, account_id)
    end
    module Quotes
      def self.refresh(quote_id) = AppLog.record(:quote, quote_id)
    end
    module Billing
      def self.charge(account_id, amount_cents) = AppLog.record(:charge, account_id, amount_cents)
    end
    module Payments
      def self.sync(user_id) = AppLog.record(:payments_sync, user_id)
    end
    module Alerts
      def self.notify(*details) = AppLog.record(:alert, *details)
    end
    module StatsD
      def self.timing(name, ms) = AppLog.record(:timing, name, ms)
      def self.increment(name) = AppLog.record(:increment, name)
    end
    # A Rails app's ActiveSupport::CurrentAttributes.
    module Current
      def self.trace_id = Thread.current[:trace_id]
      def self.trace_id=(id)
        Thread.current[:trace_id] = id
      end
    end
    class ApplicationJob < ActiveJob::Base; end if defined?(ActiveJob::Base)
  RUBY
end
