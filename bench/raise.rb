# frozen_string_literal: true

# The raise benchmark of docs/PERFORMANCE.md: N raise/rescue at a given stack depth, run in
# one mode per process. Prints "MODE cpu_seconds" on stdout.
#
#   ruby bench/raise.rb MODE [N] [DEPTH]
#   MODE: none | tracepoint | rbscope | rbscope-inspector
#
# `tracepoint` is what error trackers do: a TracePoint(:raise) reading the raising frame's
# locals. `rbscope` captures every app frame (locals, self), rate limiting off, reading the VM's
# frames directly; `rbscope-inspector` forces the portable debug-inspector path.
mode = ARGV.fetch(0)
n = Integer(ARGV.fetch(1, "200000"))
depth = Integer(ARGV.fetch(2, "50"))

case mode
when "none"
when "tracepoint"
  TRACE = TracePoint.new(:raise) do |tp|
    b = tp.binding
    b.local_variables.each { |name| b.local_variable_get(name) }
  end
  TRACE.enable
when "rbscope", "rbscope-inspector"
  require "rbscope"
  Rbscope.start(rate_limit: 0, control_socket: false, log: false,
                capture: mode == "rbscope" ? "auto" : "inspector")
else
  abort "unknown mode #{mode}"
end

def nest(level, n)
  local_a = level
  local_b = "frame #{level}"
  return run(n) if level.zero?

  nest(level - 1, n)
end

def run(n)
  i = 0
  while i < n
    begin
      raise ArgumentError, "bench"
    rescue ArgumentError
      nil
    end
    i += 1
  end
end

t0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
nest(depth, n)
t1 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
puts format("%s %.4f", mode, t1 - t0)
