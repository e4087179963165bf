# frozen_string_literal: true

# Reading the current thread's stack in process: Rbscope.backtrace against Ruby's own
# caller_locations(0), side by side in one run, at a stack depth of DEPTH Ruby frames.
# Both build one lazy object per frame; labels, parameters and lines are worked out only when
# asked, so this measures the read. The best of RUNS rounds of N calls each counts.
#
# Then exceptions: raising at that depth and formatting the exception's backtrace, Ruby's
# (backtrace_locations) against rbscope's (better_backtrace), with the agent started in both.
#
#   ruby -Igem/lib bench/backtrace.rb [N] [DEPTH] [RUNS]
require "rbscope"
require "tmpdir"

n = Integer(ARGV.fetch(0, "20000"))
depth = Integer(ARGV.fetch(1, "50"))
runs = Integer(ARGV.fetch(2, "5"))

# A stack of DEPTH distinct methods in as many classes, as an app's stack is (not one method
# recursing: frames of one method would share their labels).
(1..depth).each do |i|
  Object.const_set("Layer#{i}", Class.new).class_eval <<~RUBY, __FILE__, __LINE__ + 1
    def self.call(d, &blk) = d <= 1 ? blk.call : Layer#{i + 1}.call(d - 1, &blk)
  RUBY
end
Object.const_set("Layer#{depth + 1}", Class.new)

def at_depth(d, &blk) = Layer1.call(d, &blk)

def best(runs)
  Array.new(runs) do
    t0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
    yield
    Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - t0
  end.min
end

at_depth(depth) do
  frames = caller_locations(0).size
  ours = Rbscope.backtrace.size
  raise "frame counts differ: #{frames} vs #{ours}" unless (ours - frames).abs <= 1

  base = best(runs) { n.times { caller_locations(0).size } }
  rbs = best(runs) { n.times { Rbscope.backtrace.size } }
  puts format("stack of %d frames, %d reads, best of %d", frames, n, runs)
  puts format("caller_locations(0).size   %.4fs  %.2f us/read", base, base * 1e6 / n)
  puts format("Rbscope.backtrace.size     %.4fs  %.2f us/read  %.2fx", rbs, rbs * 1e6 / n, rbs / base)

  # Formatted: every frame's line as text ([4/11]'s target: within 3x).
  m = [n / 10, 1].max
  fbase = best(runs) { m.times { caller_locations(0).map(&:to_s) } }
  frbs = best(runs) { m.times { Rbscope.backtrace.map(&:to_s) } }
  puts format("formatted, %d reads:", m)
  puts format("caller_locations(0).map(&:to_s)  %.4fs  %.2f us/read", fbase, fbase * 1e6 / m)
  puts format("Rbscope.backtrace.map(&:to_s)    %.4fs  %.2f us/read  %.2fx", frbs, frbs * 1e6 / m, frbs / fbase)
end

# Exceptions: the raise hook copies the stack (fast capture); better_backtrace builds the frames.
Rbscope.start(store: File.join(Dir.mktmpdir("rbscope-bench"), "s.db"), log: false)
m = [n / 10, 1].max
failing = -> { at_depth(depth) { raise ArgumentError, "bench" } }
e = (failing.call rescue $!)
unless e.better_backtrace && e.better_backtrace.size == e.backtrace_locations.size
  raise "better_backtrace does not match: #{e.better_backtrace&.size} vs #{e.backtrace_locations.size}"
end
ebase = best(runs) { m.times { (failing.call rescue $!).backtrace_locations.map(&:to_s) } }
erbs = best(runs) { m.times { (failing.call rescue $!).better_backtrace.map(&:to_s) } }
puts format("exceptions raised at that depth and formatted, %d each:", m)
puts format("raise + backtrace_locations.map(&:to_s)  %.4fs  %.2f us/raise", ebase, ebase * 1e6 / m)
puts format("raise + better_backtrace.map(&:to_s)     %.4fs  %.2f us/raise  %.2fx", erbs, erbs * 1e6 / m, erbs / ebase)
