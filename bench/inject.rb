# frozen_string_literal: true

# `rbscope inject -p PID` (issue [9/11]; every Ruby: [1/6]): from the command to the agent
# answering, how long the target's main thread was stopped and, on Ruby 3.3+, how long the
# thread that woke it (Ruby's timer thread) was stopped, for a process whose every thread
# sleeps, one whose main thread waits in Queue#pop, and one whose main thread is busy running
# Ruby. Each run is a fresh process that never loaded rbscope. Needs ptrace rights on the
# targets (same user with kernel.yama.ptrace_scope 0, or root) and a checkout built for this
# Ruby (scripts/build RUBY; CARGO_TARGET_DIR is honoured). The `ruby` on PATH must be this one.
#
#   ruby bench/inject.rb [RUNS]
require "rbconfig"

# bench/rubies sets BENCH_RESULTS=1: after the human output, the key figures again, one
# "RESULT<TAB>row<TAB>cell" line each, so that it can put every Ruby's run in one table.
def result(row, cell)
  puts "RESULT\t#{row}\t#{cell}" if ENV["BENCH_RESULTS"]
end

runs = Integer(ARGV[0] || 5)
root = File.expand_path("..", __dir__)
cli = File.join(root, "gem/lib/rbscope/rbscope-cli")
abort "build first: scripts/build" unless File.executable?(cli)
target = File.join(root, "crates/rbscope/tests/programs/inject_target.rb")
env = { "RBSCOPE_RUBY_LIB" => File.join(root, "gem/lib") }

cases = [
  ["every thread asleep", %w[sleep 30]],
  ["main thread in Queue#pop", %w[queue]],
  ["main thread busy in Ruby", %w[work 2000000000]],
]
results = Hash.new { |h, k| h[k] = [] }
cases.each do |name, args|
  runs.times do
    r, w = IO.pipe
    input_r, input_w = IO.pipe # kept open: queue's reader thread waits on it
    pid = Process.spawn(RbConfig.ruby, target, *args, in: input_r, out: w, err: File::NULL)
    w.close
    input_r.close
    r.gets # "ready PID", once the main thread is asleep
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    out = IO.popen(env, [cli, "inject", "-p", pid.to_s, "--timeout", "60s"], err: %i[child out], &:read)
    wall = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000
    Process.kill(:KILL, pid)
    Process.wait(pid)
    r.close
    input_w.close
    paused = out[/stopped for ([\d.]+) ms/, 1]
    abort "inject failed: #{out}" unless paused
    waker = out[/by thread \d+, stopped for ([\d.]+) ms/, 1]
    results[name] << { ready: wall, paused: paused.to_f, waker: waker&.to_f }
  end
end

puts "rbscope inject, #{runs} fresh processes each (#{RUBY_DESCRIPTION})"
puts format("%-28s %16s %16s %16s %16s", "target", "ready (median)", "ready (max)", "paused (max)",
            "waker (max)")
results.each do |name, list|
  ready = list.map { _1[:ready] }.sort
  wakers = list.filter_map { _1[:waker] }
  puts format("%-28s %13.0f ms %13.0f ms %13.2f ms %16s", name, ready[ready.size / 2], ready.max,
              list.map { _1[:paused] }.max, wakers.empty? ? "-" : format("%.2f ms", wakers.max))
end
all = results.values.flatten
worst_ready = all.map { _1[:ready] }.max
worst_pause = (all.map { _1[:paused] } + all.filter_map { _1[:waker] }).max
puts "#{worst_ready < 1000 ? "PASS" : "FAIL"}  inject to agent ready under 1 s (worst #{worst_ready.round} ms)"
puts "#{worst_pause < 10 ? "PASS" : "FAIL"}  any thread of the target paused under 10 ms (worst #{worst_pause.round(2)} ms)"

puts "TITLE\tinject: #{runs} fresh processes each" if ENV["BENCH_RESULTS"]
results.each do |name, list|
  ready = list.map { _1[:ready] }.sort
  wakers = list.filter_map { _1[:waker] }
  result("#{name}: ready median / max", format("%.0f / %.0f ms", ready[ready.size / 2], ready.max))
  result("#{name}: main thread paused (max)", format("%.2f ms", list.map { _1[:paused] }.max))
  # "-": no run stopped a second thread to wake the main one (as on Ruby before 3.3).
  result("#{name}: waker paused (max)", wakers.empty? ? "-" : format("%.2f ms", wakers.max))
end
result("target met: inject to agent ready under 1 s", worst_ready < 1000 ? "yes" : "no")
result("target met: any thread of the target paused under 10 ms", worst_pause < 10 ? "yes" : "no")
