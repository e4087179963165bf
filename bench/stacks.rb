# frozen_string_literal: true

# `rbscope stacks -p PID --remote` against a 20-thread Ruby process (19 threads asleep in
# methods 6 frames deep, one busy computing), RUNS times. Prints, per run, the whole command's
# wall time, the time rbscope spent reading, and how long the target was paused; then the
# median and the worst. Side by side in the same run, the baselines:
#   * the target's own `Thread.list.map(&:backtrace_locations)` (what Ruby itself needs, in
#     process, to list every thread's stack), timed inside the target;
#   * `rbspy snapshot --pid PID` when RBSPY points at an rbspy binary (it reads one thread).
#
#   ruby bench/stacks.rb [RUNS] [RBSCOPE_BINARY]
# The `ruby` on PATH runs the target (bench/rubies puts the Ruby under test first).
require "json"
require "open3"

# bench/rubies sets BENCH_RESULTS=1: after the human output, the key figures again, one
# "RESULT<TAB>row<TAB>cell" line each, so that it can put every Ruby's run in one table.
def result(row, cell)
  puts "RESULT\t#{row}\t#{cell}" if ENV["BENCH_RESULTS"]
end

runs = Integer(ARGV.fetch(0, "20"))
rbscope = ARGV.fetch(1, File.expand_path("../target/release/rbscope", __dir__))
abort "build the CLI first: cargo build --release -p rbscope" unless File.executable?(rbscope)

target = <<~'RUBY'
  class Sleeper
    def nap(seconds, label: "x") = loop { deeper(3) }
    def deeper(n) = n.zero? ? sleep : deeper(n - 1)
  end
  threads = 18.times.map { |i| Thread.new { Sleeper.new.nap(1) }.tap { |t| t.name = "sleeper-#{i}" } }
  threads << Thread.new { x = 0; loop { x += 1 } }.tap { |t| t.name = "busy" }
  Thread.pass until threads.first(18).all? { |t| t.status == "sleep" }
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  100.times { Thread.list.map(&:backtrace_locations) }
  own = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000 / 100
  $stdout.puts format("ready %.3f", own)
  $stdout.flush
  sleep
RUBY

stdin, stdout, wait = Open3.popen2("ruby", "-e", target)
stdin.close
ready = stdout.gets.to_s
abort "target did not start" unless ready.start_with?("ready")
own_ms = ready.split[1].to_f
pid = wait.pid
at_exit { Process.kill("KILL", pid) }

def ms(t) = format("%.2f ms", t)
def median(xs) = xs.sort[xs.size / 2]

walls = []
reads = []
pauses = []
threads = nil
runs.times do
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  out, status = Open3.capture2(rbscope, "stacks", "-p", pid.to_s, "--remote", "--json")
  walls << (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000
  abort "rbscope failed" unless status.success?
  report = JSON.parse(out)
  reads << report["read_ms"]
  pauses << report["paused_ms"]
  threads = report["threads"].size
end

puts "== rbscope stacks --remote, #{threads} threads, #{runs} runs"
puts "whole command (wall)       median #{ms(median(walls))}   worst #{ms(walls.max)}"
puts "reading (inside rbscope)   median #{ms(median(reads))}   worst #{ms(reads.max)}"
puts "target paused              median #{ms(median(pauses))}   worst #{ms(pauses.max)}"
puts "baseline: the target's own Thread.list.map(&:backtrace_locations): #{ms(own_ms)} " \
     "(rbscope's read is #{format('%.1fx', median(reads) / own_ms)})"

if (rbspy = ENV["RBSPY"]) && File.executable?(rbspy)
  rb = Array.new(runs) do
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    out, status = Open3.capture2e(rbspy, "snapshot", "--pid", pid.to_s)
    abort "rbspy failed: #{out}" unless status.success?
    (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000
  end
  puts "baseline: rbspy snapshot (one thread), whole command: median #{ms(median(rb))} " \
       "(rbscope, every thread: #{format('%.2fx', median(walls) / median(rb))})"
end

puts "TITLE\tstacks: rbscope stacks --remote, #{runs} runs" if ENV["BENCH_RESULTS"]
result("threads read", threads)
result("whole command (wall): median / worst", format("%.2f / %.2f ms", median(walls), walls.max))
result("reading (inside rbscope): median / worst", format("%.2f / %.2f ms", median(reads), reads.max))
result("target paused: median / worst", format("%.2f / %.2f ms", median(pauses), pauses.max))
result("the target's own Thread.list.map(&:backtrace_locations)",
       format("%.2f ms (read %.1fx)", own_ms, median(reads) / own_ms))
result("rbspy snapshot (one thread), whole command: median", ms(median(rb))) if rb
# The issue's targets (docs/PERFORMANCE.md, "Every thread of another process"); the human
# output above leaves them to the reader, the table says yes or no.
result("target met: whole command under 10 ms (median)", median(walls) < 10 ? "yes" : "no")
result("target met: target paused under 1 ms (worst)", pauses.max < 1 ? "yes" : "no")
