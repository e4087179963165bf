# frozen_string_literal: true

# A program that never loads rbscope, for the inject tests and bench/inject.rb. MODE:
#   work N      a loop of N method calls (or fewer: until a line comes on stdin), printing a
#               checksum every 200,000 calls
#   sleep S     every thread sleeping S seconds (the main one and one more)
#   sleep1 S    only the main thread, sleeping S seconds
#   forever     the main thread in `sleep` (no timeout), woken by a thread that reads a line
#   queue       the main thread in Queue#pop, fed one line read by another thread
#   join        the main thread in Thread#join of a worker that reads a line
#   pipe        the main thread blocked reading stdin
# It prints "ready PID" first (for the blocking modes, once Ruby reports the main thread
# asleep, so that a test injects into a blocked thread) and, at the end, what it did and how
# long it took, so a test can check nothing changed.
$stdout.sync = true
mode, arg = ARGV
t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
class Worker
  def step(i) = (i * 7) % 1000
end

# Says "ready" once the main thread is asleep (Thread#status is "sleep" from the moment it
# starts to wait; the test then also waits for its system call).
def ready_when_asleep
  main = Thread.current
  Thread.new do
    sleep 0.001 until main.status == "sleep"
    puts "ready #{Process.pid}"
  end
end

case mode
when "work"
  w = Worker.new
  sum = 0
  calls = 0
  stop = false
  Thread.new { $stdin.gets; stop = true }
  puts "ready #{Process.pid}"
  # Names the injected code also uses: it runs in the scope of the frame it interrupts (this
  # block's), and must leave them alone.
  lib = main = e = sources = s = f = :app
  Integer(arg).times do |i|
    break if stop
    sum += w.step(i)
    calls = i + 1
    puts "sum #{calls} #{sum}" if (calls % 200_000).zero?
  end
  puts "done #{calls} #{sum}"
  puts "locals #{[lib, main, e, sources, s, f].uniq.inspect}"
  # After an injection, the gem's files count as loaded: requiring it again loads nothing.
  own = $LOADED_FEATURES.grep(%r{/rbscope(/[a-z_]+)?\.rb\z})
  puts "loaded #{own.size} #{defined?(::Rbscope) ? (require "rbscope") : "-"}"
when "sleep"
  other = Thread.new { sleep Float(arg) }
  ready_when_asleep
  sleep Float(arg)
  other.join
  puts "slept #{Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0}"
when "sleep1"
  ready_when_asleep
  sleep Float(arg)
  puts "slept #{Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0}"
when "forever"
  main = Thread.current
  line = nil
  Thread.new do
    line = $stdin.gets
    main.wakeup
  end
  ready_when_asleep
  sleep
  puts "woke #{line.inspect}"
when "queue"
  q = Queue.new
  Thread.new { q << $stdin.gets }
  ready_when_asleep
  puts "popped #{q.pop.inspect}"
when "join"
  worker = Thread.new { $stdin.gets }
  ready_when_asleep
  worker.join
  puts "joined #{worker.value.inspect}"
when "pipe"
  ready_when_asleep
  line = $stdin.gets
  puts "read #{line.inspect}"
end
