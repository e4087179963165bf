# frozen_string_literal: true

# `rbscope inject -p PID` (issue [9/11]): from the command to the agent answering, and how
# long the target's main thread was stopped, for a process whose every thread sleeps and for
# one whose main thread is busy running Ruby. Each run is a fresh process that never loaded
# rbscope. Needs ptrace rights on the targets (same user with kernel.yama.ptrace_scope 0, or
# root) and a built checkout (scripts/build).
#
#   ruby bench/inject.rb [RUNS]
require "rbconfig"

runs = Integer(ARGV[0] || 5)
root = File.expand_path("..", __dir__)
cli = File.join(root, "target/release/rbscope")
abort "build first: scripts/build" unless File.executable?(cli)
target = File.join(root, "crates/rbscope/tests/programs/inject_target.rb")
env = { "RBSCOPE_RUBY_LIB" => File.join(root, "gem/lib") }

results = Hash.new { |h, k| h[k] = [] }
[["every thread asleep", %w[sleep 30]], ["main thread busy in Ruby", %w[work 2000000000]]].each do |name, args|
  runs.times do
    r, w = IO.pipe
    pid = Process.spawn(RbConfig.ruby, target, *args, out: w, err: File::NULL)
    w.close
    r.gets # "ready PID"
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    out = IO.popen(env, [cli, "inject", "-p", pid.to_s], err: %i[child out], &:read)
    wall = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000
    Process.kill(:KILL, pid)
    Process.wait(pid)
    r.close
    paused = out[/stopped for ([\d.]+) ms/, 1]
    abort "inject failed: #{out}" unless paused
    results[name] << { ready: wall, paused: paused.to_f }
  end
end

puts "rbscope inject, #{runs} fresh processes each (#{RUBY_DESCRIPTION})"
puts format("%-28s %16s %16s %16s", "target", "ready (median)", "ready (max)", "paused (max)")
results.each do |name, list|
  ready = list.map { _1[:ready] }.sort
  puts format("%-28s %13.0f ms %13.0f ms %13.2f ms", name, ready[ready.size / 2], ready.max, list.map { _1[:paused] }.max)
end
worst_ready = results.values.flatten.map { _1[:ready] }.max
worst_pause = results.values.flatten.map { _1[:paused] }.max
puts "#{worst_ready < 1000 ? "PASS" : "FAIL"}  inject to agent ready under 1 s (worst #{worst_ready.round} ms)"
puts "#{worst_pause < 10 ? "PASS" : "FAIL"}  target paused under 10 ms (worst #{worst_pause.round(2)} ms)"
