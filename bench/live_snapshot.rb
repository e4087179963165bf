# frozen_string_literal: true

# `rbscope snapshot -p PID --all` against a 21-thread Ruby process with the agent: 19 threads
# parked 50 frames deep in methods with locals, one ticker that measures the app's longest pause
# (the largest gap between its 1 ms ticks), the main thread asleep. Per run: the whole
# command's wall time and how long the agent held the VM (every thread stopped) for all the
# snapshots; per thread, the hold divided by the threads taken. Side by side in the same target,
# the baseline: an exception raised 50 frames deep, captured at raise and reported
# (`Rbscope.report`: the same walk and store), timed inside the target.
#
#   ruby bench/live_snapshot.rb [RUNS] [RBSCOPE_BINARY]
# The `ruby` on PATH runs the target (bench/rubies puts the Ruby under test first).
require "json"
require "open3"
require "tmpdir"

def result(row, cell)
  puts "RESULT\t#{row}\t#{cell}" if ENV["BENCH_RESULTS"]
end

runs = Integer(ARGV.fetch(0, "20"))
rbscope = ARGV.fetch(1, File.expand_path("../target/release/rbscope", __dir__))
abort "build the CLI first: scripts/build" unless File.executable?(rbscope)
lib = File.expand_path("../gem/lib", __dir__)

target = <<~'RUBY'
  require "rbscope"
  Rbscope.start(rate_limit: 0, log: false)
  class Diver
    def dive(n, parked, &blk)
      depth = n
      label = "level #{n}"
      return blk.call(parked) if n.zero?

      dive(n - 1, parked, &blk)
    end
  end
  parked = Queue.new
  go = Queue.new
  threads = 19.times.map do |i|
    Thread.new do
      Thread.current.name = "diver-#{i}"
      Diver.new.dive(48, parked) { |q| q << 1; go.pop }
    end
  end
  19.times { parked.pop }
  Thread.pass until threads.all? { |t| t.status == "sleep" }
  worst = 0.0
  Thread.new do
    Thread.current.name = "ticker"
    last = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    loop do
      sleep 0.001
      now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      worst = now - last if now - last > worst
      last = now
    end
  end
  # Baseline: an exception 50 frames deep, captured at raise and reported.
  times = Array.new(20) do
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    begin
      Diver.new.dive(48, nil) { raise "deep" }
    rescue => e
      Rbscope.report(e)
    end
    Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  end
  Rbscope.flush
  $stdout.puts format("ready %.3f", times.sort[times.size / 2] * 1000)
  $stdout.flush
  while $stdin.gets
    $stdout.puts format("worst %.3f", worst * 1000)
    $stdout.flush
    worst = 0.0
  end
RUBY

Dir.mktmpdir do |dir|
  env = { "RBSCOPE_STORE" => File.join(dir, "bench.db"), "XDG_RUNTIME_DIR" => dir }
  stdin, stdout, wait = Open3.popen2(env, "ruby", "-I#{lib}", "-e", target)
  ready = stdout.gets.to_s
  abort "target did not start" unless ready.start_with?("ready")
  report_ms = ready.split[1].to_f
  pid = wait.pid
  at_exit { Process.kill("KILL", pid) }
  # The ticker's worst gap over a second before any snapshot: the machine's own noise.
  stdin.puts
  stdout.gets
  sleep 1
  stdin.puts
  idle_worst = stdout.gets.split[1].to_f

  def ms(t) = format("%.2f ms", t)
  def median(xs) = xs.sort[xs.size / 2]

  walls = []
  helds = []
  per_thread = []
  taken = 0
  runs.times do
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    out, status = Open3.capture2(env, rbscope, "snapshot", "-p", pid.to_s, "--all", "--json")
    walls << (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000
    abort "rbscope failed" unless status.success?
    answer = JSON.parse(out)
    taken = answer["taken"].size
    helds << answer["held_us"] / 1000.0
    per_thread << answer["held_us"] / 1000.0 / taken
  end
  stdin.puts
  worst = stdout.gets.split[1].to_f

  puts "== rbscope snapshot -p --all, #{taken} threads (19 parked 50 frames deep), #{runs} runs"
  puts "whole command (wall)         median #{ms(median(walls))}   worst #{ms(walls.max)}"
  puts "VM held, all threads         median #{ms(median(helds))}   worst #{ms(helds.max)}"
  puts "VM held per thread           median #{ms(median(per_thread))}   worst #{ms(per_thread.max)}"
  puts "baseline: an exception 50 frames deep, captured and reported: #{ms(report_ms)} " \
       "(a thread's snapshot holds the VM #{format('%.2fx', median(per_thread) / report_ms)} of that)"
  puts "the app's longest pause (ticker): #{ms(worst)} during the runs, #{ms(idle_worst)} over a " \
       "second before them"
  result("snapshot -p: VM held per thread (median)", ms(median(per_thread)))
  result("exception capture + report, 50 deep", ms(report_ms))
  result("snapshot -p: app's longest pause", ms(worst))
end
