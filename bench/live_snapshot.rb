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

# `ruby bench/live_snapshot.rb callgrind [SNAPSHOTS]`: the same comparison in instructions,
# which the machine's other load cannot move (needs valgrind; a few minutes).
#  - A thread's snapshot: a target with 19 threads parked 50 frames deep, under callgrind
#    collecting only inside the agent's `live_stacks::snapshot` (the whole request, VM held:
#    listing the threads, choosing, and each thread's copy, walk and store); SNAPSHOTS
#    (default 3) `rbscope snapshot -p` of the 19 parked threads; divided by the threads taken.
#  - An exception: a target raising 50 frames deep and rescuing, 20 and then 120 times, with
#    rbscope capturing and reporting each (`Rbscope.report`) and without rbscope; the
#    difference of the two counts over 100 is one exception's cost, and the with/without
#    difference is what rbscope adds to it (the capture at raise and the report, the Ruby
#    around them and the writer thread's store write); and, collecting only inside the
#    agent's raise hook and report, the agent's own part (what a thread's snapshot counts).
if ARGV[0] == "callgrind"
  lib = File.expand_path("../gem/lib", __dir__)
  rbscope = File.expand_path("../gem/lib/rbscope/rbscope-cli", __dir__)
  abort "build first: scripts/build" unless File.executable?(rbscope)
  abort "needs valgrind" unless system("command -v valgrind >/dev/null")
  snapshots = Integer(ARGV.fetch(1, "3"))
  diver = <<~'RUBY'
    require "rbscope"
    Rbscope.start(rate_limit: 0, log: false) if ENV["BENCH_AGENT"] == "on"
    class Diver
      def dive(n, parked, &blk)
        depth = n
        label = "level #{n}"
        return blk.call(parked) if n.zero?

        dive(n - 1, parked, &blk)
      end
    end
  RUBY
  parked = diver + <<~'RUBY'
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
    $stdout.puts "ready"
    $stdout.flush
    $stdin.read
  RUBY
  raising = diver + <<~'RUBY'
    # The same locals as a parked thread's frames hold (a Queue in `parked`).
    queue = Queue.new
    Integer(ENV.fetch("BENCH_N")).times do
      begin
        Diver.new.dive(48, queue) { raise "deep" }
      rescue => e
        Rbscope.report(e) if ENV["BENCH_AGENT"] == "on"
      end
    end
    Rbscope.flush if ENV["BENCH_AGENT"] == "on"
  RUBY
  collected = ->(text) { Integer(text[/Collected : (\d+)/, 1] || abort("no callgrind total in:\n#{text}")) }
  Dir.mktmpdir do |dir|
    env = { "RBSCOPE_STORE" => File.join(dir, "bench.db"), "XDG_RUNTIME_DIR" => dir,
            "BENCH_AGENT" => "on" }
    # Files, not -e: a snapshot reads its frames' source lines, as in an app.
    parked = File.join(dir, "parked.rb").tap { |f| File.write(f, parked) }
    raising = File.join(dir, "raising.rb").tap { |f| File.write(f, raising) }
    cg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    # A thread's snapshot.
    stdin, stdout, stderr, wait = Open3.popen3(env, *cg, "--collect-atstart=no",
                                               "--toggle-collect=*live_stacks::snapshot",
                                               "ruby", "-I#{lib}", parked)
    abort "target did not start: #{stderr.read}" unless stdout.gets.to_s.start_with?("ready")
    taken = 0
    snapshots.times do
      # The 19 parked threads by name (not the main thread, shallow, which would lower the mean).
      divers = 19.times.flat_map { |i| ["--thread", "diver-#{i}"] }
      out, status = Open3.capture2(env, rbscope, "snapshot", "-p", wait.pid.to_s, *divers, "--json",
                                   "--wait", "60s")
      abort "rbscope snapshot failed" unless status.success?
      taken += JSON.parse(out)["taken"].count { |t| t["id"] }
    end
    stdin.close
    per_thread = collected.(stderr.read) / taken.to_f
    wait.value
    # An exception, with and without rbscope.
    count = lambda do |agent, n, *toggles|
      _, err, = Open3.capture3(env.merge("BENCH_AGENT" => agent, "BENCH_N" => n.to_s), *cg, *toggles,
                               "ruby", "-I#{lib}", raising)
      collected.(err)
    end
    with = (count.("on", 120) - count.("on", 20)) / 100.0
    without = (count.("off", 120) - count.("off", 20)) / 100.0
    # Only inside the agent's raise hook and its report: the same parts a thread's snapshot
    # has (copy, walk, store), without the Ruby around them or the writer thread's SQLite.
    toggles = ["--collect-atstart=no", "--toggle-collect=rbscope_agent::capture::on_raise",
               "--toggle-collect=rbscope_agent::capture::report::report"]
    agent_only = (count.("on", 120, *toggles) - count.("on", 20, *toggles)) / 100.0
    fmt = ->(n) { n.round.to_s.reverse.scan(/\d{1,3}/).join(",").reverse }
    puts "== in instructions (callgrind), Ruby #{`ruby -e 'print RUBY_VERSION'`}"
    puts "a thread's snapshot (snapshot -p, #{taken} threads 50 deep) #{fmt.(per_thread)} per thread"
    puts "an exception 50 deep, raised and rescued, no rbscope      #{fmt.(without)}"
    puts "the same, captured and reported by rbscope               #{fmt.(with)}"
    puts "rbscope's part of it (capture at raise + report)         #{fmt.(with - without)}"
    puts "  of which inside the agent's raise hook and report      #{fmt.(agent_only)}"
    puts format("a thread's snapshot / rbscope's part of an exception: %.2fx; / the agent's part: %.2fx",
                per_thread / (with - without), per_thread / agent_only)
    result("snapshot -p per thread (instructions)", fmt.(per_thread))
    result("exception capture + report (instructions)", fmt.(with - without))
  end
  exit
end

runs = Integer(ARGV.fetch(0, "20"))
rbscope = ARGV.fetch(1, File.expand_path("../gem/lib/rbscope/rbscope-cli", __dir__))
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
