# frozen_string_literal: true

# What `rbscope record` (sampling every thread at 99 Hz from outside) costs the sampled
# program, side by side in one run: the same CPU-bound work (fib, with a second thread
# sleeping) timed with no profiler and while `rbscope record -p PID --rate 99` samples it.
# Each mode runs RUNS times in fresh processes; the minimum counts.
#
#   ruby bench/record.rb [RUNS] [FIB_N]          (needs scripts/build first)
require "open3"

runs = Integer(ARGV.fetch(0, "7"))
fib_n = Integer(ARGV.fetch(1, "27"))
cli = File.expand_path("../gem/lib/rbscope/rbscope-cli", __dir__)
abort "build first: scripts/build" unless File.executable?(cli)

TARGET = <<~RUBY
  def fib(n) = n < 2 ? n : fib(n - 1) + fib(n - 2)
  Thread.new { loop { sleep 0.01 } }
  $stdout.sync = true
  puts "ready \#{Process.pid}"
  $stdin.gets
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  5.times { fib(#{fib_n}) }
  puts format("done %.6f", Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0)
  $stdin.read
RUBY

def run_once(cli, sampled)
  stdin, stdout, wait = Open3.popen2("ruby", "-e", TARGET)
  pid = Integer(stdout.gets[/ready (\d+)/, 1])
  if sampled
    err_r, err_w = IO.pipe
    rec = Process.spawn(cli, "record", "-p", pid.to_s, "--duration", "10m", "--rate", "99",
                        "--format", "collapsed", "-o", "/dev/null", err: err_w)
    err_w.close
    line = err_r.gets
    abort "rbscope record did not start: #{line}" unless line&.include?("sampling")
  end
  stdin.puts "go"
  seconds = Float(stdout.gets[/done ([\d.]+)/, 1])
  summary = nil
  if sampled
    Process.kill("INT", rec)
    Process.wait(rec)
    summary = err_r.read.strip
    err_r.close
  end
  stdin.close
  wait.value
  [seconds, summary]
end

base = Array.new(runs) { run_once(cli, false).first }.min
sampled_runs = Array.new(runs) { run_once(cli, true) }
best, summary = sampled_runs.min_by(&:first)
puts "== 5 x fib(#{fib_n}) plus a sleeping thread, minimum of #{runs} runs (ruby #{RUBY_VERSION})"
puts format("no profiler                     %.3fs", base)
puts format("rbscope record at 99 Hz         %.3fs  %.3fx   (%s)", best, best / base, summary.lines.last.to_s.strip)
