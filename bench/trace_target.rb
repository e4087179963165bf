# frozen_string_literal: true

# The traced program of bench/trace.rb: N calls of a trivial method in a loop.
#   ruby -Igem/lib bench/trace_target.rb (none|agent) N
# Prints "ready PID", waits for a line on stdin, runs the loop, prints "done SECONDS"
# (monotonic wall time of the loop), then waits for stdin to close.
require "tmpdir"
mode, n = ARGV[0], Integer(ARGV[1])
if mode == "agent"
  require "rbscope"
  Rbscope.start(store: File.join(Dir.tmpdir, "rbscope-bench-trace.db"))
  # The agent measures the TSC's rate in its first 20 ms; a trace that starts before that is
  # stamped with CLOCK_MONOTONIC instead (slower hooks). Measure the steady state, unless
  # asked for the clock_gettime path.
  sleep 0.001 until ENV["BENCH_EARLY_ATTACH"] || Rbscope::Native.trace_clock_settled?
end

class Hot
  def hot(x) = x
  def never = nil
end

h = Hot.new
$stdout.sync = true
puts "ready #{Process.pid}"
$stdin.gets
t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
i = 0
while i < n
  h.hot(i)
  i += 1
end
puts format("done %.6f", Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0)
$stdin.read
