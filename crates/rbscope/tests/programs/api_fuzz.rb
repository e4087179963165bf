# frozen_string_literal: false

# Calls every public Rbscope method with generated odd arguments for RBSCOPE_FUZZ_SECONDS
# seconds (default 20; RBSCOPE_FUZZ_SEED repeats a run). Every call must return or raise one of
# the exceptions its method documents; anything else is printed as "unexpected ...". The
# process must live to print "alive" at the end (tests/ruby_api.rs).
require "rbscope"
require "rbscope/restore"
require "pathname"
require "tmpdir"

seconds = Float(ENV.fetch("RBSCOPE_FUZZ_SECONDS", "20"))
seed = Integer(ENV.fetch("RBSCOPE_FUZZ_SEED", Random.new_seed.to_s))
rng = Random.new(seed)
dir = Dir.pwd
puts "ready seed #{seed} for #{seconds} s"
$stdout.flush

Rbscope.start(log: false)

# An object whose every method raises (BasicObject: no #inspect, #class, #is_a?, #respond_to?).
class Evil < BasicObject
  def method_missing(name, *) = ::Kernel.raise("evil #{name}")
  def respond_to_missing?(*) = ::Kernel.raise("evil respond_to_missing?")
end

# An ordinary-looking object whose conversions lie or raise.
class Liar
  def to_s = nil
  def inspect = raise("inspect")
  def to_path = 5
  def to_str = raise("to_str")
  def to_sym = raise("to_sym")
  def to_i = raise("to_i")
  def ==(_other) = raise("==")
end

class ToPath
  def initialize(path) = @path = path
  def to_path = @path
end

FrozenError0 = RuntimeError.new("frozen").freeze
dead = Thread.new { 1 }.tap(&:join)
sleeper = Thread.new { sleep }
raised = begin
  raise ArgumentError, "raised once"
rescue ArgumentError => e
  e
end

ODD = [
  nil, true, false, 0, 1, -1, 7, 2**31, 2**32 + 1, 2**63, 2**64, -(2**64), 10**400, 1.5, -0.0,
  Float::NAN, Float::INFINITY, -Float::INFINITY, 1e300, Rational(1, 3), Complex(1, 1),
  "", "x", "5", " 7 ", "true", "auto", "Object", "a\0b", "\xff\xfe".dup.force_encoding("UTF-8"),
  "\xff".b, "é".encode("ISO-8859-1"), "é".encode("UTF-16LE"), "x" * 100_000, "line\nbreak",
  "frozen".freeze, :sym, :auto, :String, [], [1, "a", nil], ["Object", :String, Integer],
  Array.new(20_000, "x"), [Evil.new], {}, { a: 1 }, Object.new, Evil.new, Liar.new, Class.new,
  Module.new, String, Comparable, Thread.current, dead, sleeper, RuntimeError.new("e"),
  FrozenError0, raised, Struct.new(:a).new(1), -> { 1 }, method(:puts), Pathname("/nonexistent/x"),
  ToPath.new(File.join(dir, "via_to_path.json")), ToPath.new(7), $stdout,
  ObjectSpace::WeakMap.new, 1..2, Encoding::UTF_8, Time.at(0), BasicObject.new
].freeze

OPTION_NAMES = (Rbscope::Settings::KEYS.keys + Rbscope::Settings::KEYS.keys.map(&:to_s) +
                [:nope, "nope", 1, nil, Object.new]).freeze

def pick(rng, list) = list[rng.rand(list.size)]

def odd(rng) = pick(rng, ODD)

def some(rng, max = 3) = Array.new(rng.rand(max + 1)) { odd(rng) }

def kwargs(rng, names)
  h = {}
  rng.rand(4).times { h[pick(rng, names)] = odd(rng) }
  h
end

valid_dumps = 0
counts = Hash.new(0)
unexpected = 0
deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds

# name => [exceptions the method documents, a call]
calls = {
  start: [[ArgumentError, TypeError], -> { Rbscope.start(**kwargs(rng, OPTION_NAMES)) }],
  report: [[ArgumentError, TypeError], lambda {
    args = rng.rand(4).zero? ? some(rng) : [pick(rng, [raised, FrozenError0, RuntimeError.new("r"), odd(rng)])]
    kw = kwargs(rng, [:how, :order, "id", :how, 1, :x])
    Rbscope.report(*args, **kw)
  }],
  backtrace: [[ArgumentError, TypeError], lambda {
    rng.rand(3).zero? ? Rbscope.backtrace(*some(rng)) : Rbscope.backtrace(pick(rng, [dead, sleeper, Thread.current, odd(rng)]))
  }],
  heap_dump: [[ArgumentError, TypeError, RuntimeError], lambda {
    # Strings other than these name a file in a directory that does not exist: checked,
    # never written.
    away = ->(v) { String === v && !v.b.start_with?(dir.b) && !v.empty? ? "#{dir}/missing/".b + v.b : v }
    path = rng.rand(3).zero? ? File.join(dir, "dump#{rng.rand(3)}.json") : away.call(odd(rng))
    args = rng.rand(5).zero? ? some(rng).map(&away) : [path]
    kw = kwargs(rng, %i[gzip gc in_process nope])
    kw.transform_values! { |v| rng.rand(2).zero? ? pick(rng, [true, false]) : v }
    plain = [nil, true, false].include?(kw[:gzip]) && [nil, true, false].include?(kw[:gc]) &&
            [nil, true, false].include?(kw[:in_process]) && !kw.key?(:nope)
    written = ->(v) { NilClass === v || (String === v && !v.b.start_with?("#{dir}/missing/".b)) }
    fine_path = args.empty? || (args.size == 1 && written.call(args[0]))
    if plain && fine_path
      # A real dump: a few only (each forks and writes the whole heap).
      next :skipped if valid_dumps >= 2

      valid_dumps += 1
      kw[:gc] = false
    end
    Rbscope.heap_dump(*args, **kw)
  }],
  count_objects: [[ArgumentError, TypeError], lambda {
    names = pick(rng, [odd(rng), some(rng), %w[Rbscope String], [:Liar, Liar, Comparable]])
    Rbscope.count_objects(*(rng.rand(6).zero? ? some(rng) : [names]))
  }],
  flush: [[ArgumentError, TypeError], lambda {
    arg = odd(rng)
    arg = 0.01 if Numeric === arg && arg.real? && !(arg.to_f.nan? || arg.negative?)
    Rbscope.flush(arg)
  }],
  magic_root: [[ArgumentError, TypeError], -> { Rbscope.magic_root(*Array.new(rng.rand(4)) { odd(rng) }) }],
  magic_root_for: [[ArgumentError, TypeError], -> { Rbscope.magic_root_for(*some(rng)) }],
  restore: [[ArgumentError, TypeError, RuntimeError], lambda {
    id = pick(rng, [odd(rng), "zz#{rng.rand(100)}", "Q"])
    kw = kwargs(rng, %i[frame trust store console nope])
    kw[:console] = false
    kw[:store] = File.join(dir, "missing.db") if String === kw[:store] && !kw[:store].b.start_with?("/")
    Rbscope.restore(*(rng.rand(6).zero? ? some(rng) : [id]), **kw)
  }],
  started?: [[ArgumentError], -> { Rbscope.started?(*some(rng, 1)) }],
  counters: [[ArgumentError], -> { Rbscope.counters(*some(rng, 1)) }],
  store_location: [[ArgumentError], -> { Rbscope.store_location(*some(rng, 1)) }],
  agent_problem: [[ArgumentError], -> { Rbscope.agent_problem(*some(rng, 1)) }],
  stop: [[ArgumentError], -> { Rbscope.stop(odd(rng)) }],
  better_backtrace: [[ArgumentError, TypeError], -> { Rbscope::BetterBacktraces.of(odd(rng)) }],
}

rounds = 0
until Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
  name = calls.keys[rng.rand(calls.size)]
  allowed, call = calls[name]
  rounds += 1
  begin
    counts[name] += 1 unless :skipped.equal?(call.call)
  rescue *allowed => e
    counts[name] += 1
    if e.message.to_s.empty?
      unexpected += 1
      puts "unexpected #{name}: #{e.class} with no message"
    end
  rescue Exception => e # rubocop:disable Lint/RescueException
    unexpected += 1
    puts "unexpected #{name}: #{e.class}: #{e.message[0, 300]}\n  #{e.backtrace&.first(3)&.join("\n  ")}"
  end
  $stdout.flush
end

puts "calls #{counts.sort.map { |k, v| "#{k}=#{v}" }.join(' ')} (#{rounds} rounds)"
puts "unexpected #{unexpected} in all" unless unexpected.zero?
puts "started #{Rbscope.started?}"
puts "alive"
