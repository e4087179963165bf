# frozen_string_literal: true

# An app for the fault-injection tests (tests/fault_injection.rs): started with the agent,
# it says "ready PID", then runs commands read from stdin, one per line, answering
# "done COMMAND RESULT" after each:
#   raise N     raise and rescue N exceptions
#   report      Rbscope.report of a rescued exception (a snapshot for the store writer)
#   gc          GC.start
#   work N      N calls of Worker#step; the sum
#   fork        a forked child that raises, rescues and exits 7; its exit status
#   sleep S     sleep S seconds
#   thread      a thread whose block raises Failure; what its join raises, then a thread's value
$stdout.sync = true
require "rbscope"
Rbscope.start

class Worker
  def step(i) = (i * 7) % 1000
end

class Failure < StandardError; end

def deep(n) = n.zero? ? raise(Failure, "deep") : deep(n - 1)

puts "ready #{Process.pid}"
worker = Worker.new
while (line = $stdin.gets)
  cmd, arg = line.split
  result =
    case cmd
    when "raise"
      Integer(arg).times.count do
        deep(5)
      rescue Failure
        true
      end
    when "report"
      begin
        deep(3)
      rescue Failure => e
        Rbscope.report(e).inspect
      end
    when "gc"
      GC.start
      "ok"
    when "thread"
      Thread.report_on_exception = false
      failing = Thread.new { deep(2) }
      joined = begin
        failing.join
        "nothing"
      rescue Failure => e
        e.class.name
      end
      "#{joined} #{Thread.new(6) { |x| x * 7 }.value}"
    when "work"
      (0...Integer(arg)).sum { |i| worker.step(i) }
    when "fork"
      pid = fork do
        begin
          deep(2)
        rescue Failure
          nil
        end
        exit!(7)
      end
      Process.wait(pid)
      $?.exitstatus
    when "sleep"
      sleep Float(arg)
      "ok"
    else
      "unknown"
    end
  puts "done #{cmd} #{result}"
end
