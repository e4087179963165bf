# frozen_string_literal: true

# A program that never loads rbscope, for the inject tests. MODE: work (a loop of method
# calls, printing a checksum every 200,000 calls), sleep (every thread sleeping SECONDS), or
# pipe (the main thread blocked reading stdin, which it echoes back). It prints "ready PID"
# first and, at the end, what it did, so a test can check nothing changed.
$stdout.sync = true
mode, arg = ARGV
class Worker
  def step(i) = (i * 7) % 1000
end
case mode
when "work"
  w = Worker.new
  sum = 0
  puts "ready #{Process.pid}"
  Integer(arg).times do |i|
    sum += w.step(i)
    puts "sum #{i + 1} #{sum}" if ((i + 1) % 200_000).zero?
  end
  puts "done #{sum}"
when "sleep"
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  other = Thread.new { sleep Float(arg) }
  puts "ready #{Process.pid}"
  sleep Float(arg)
  other.join
  puts "slept #{Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0}"
when "pipe"
  puts "ready #{Process.pid}"
  line = $stdin.gets
  puts "read #{line.inspect}"
end
