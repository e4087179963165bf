# frozen_string_literal: true

# A non-raising benchmark: what does having rbscope started cost code that never raises?
#   ruby [--yjit] bench/fib.rb none|rbscope [N]
mode = ARGV.fetch(0)
n = Integer(ARGV.fetch(1, "27"))
if mode == "rbscope"
  require "rbscope"
  Rbscope.start(rate_limit: 0, control_socket: false, log: false)
end

def fib(n) = n < 2 ? n : fib(n - 1) + fib(n - 2)

fib(20) # warm up (YJIT compiles here)
t0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
fib(n)
puts format("%s %.4f", mode, Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - t0)
