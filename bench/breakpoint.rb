# frozen_string_literal: true

# `rbscope break` against a Ruby process with the agent, side by side in one target:
# 1. The app's other code with a breakpoint armed on a line that never runs: CPU time of a hot
#    loop (200 calls of a 50,000-iteration `while` loop), in alternating rounds without and with
#    the breakpoint set (the CLI attached, then killed, which removes it); the minimum of each.
#    The issue's bar: <= 1.02x.
# 2. What a hit costs: the wall time of a call 50 frames deep whose line has a breakpoint
#    (the hook stores a live snapshot of the thread), beside an exception raised at the same
#    depth, captured at raise and reported (`Rbscope.report`: the same walk and store); medians.
#
#   ruby bench/breakpoint.rb [RUNS] [RBSCOPE_BINARY]
# The `ruby` on PATH runs the target (bench/rubies puts the Ruby under test first).
require "open3"
require "tmpdir"

def result(row, cell)
  puts "RESULT\t#{row}\t#{cell}" if ENV["BENCH_RESULTS"]
end

runs = Integer(ARGV.fetch(0, "7"))
rbscope = ARGV.fetch(1, File.expand_path("../gem/lib/rbscope/rbscope-cli", __dir__))
abort "build the CLI first: scripts/build" unless File.executable?(rbscope)
lib = File.expand_path("../gem/lib", __dir__)

target = <<~'RUBY'
  require "rbscope"
  Rbscope.start(rate_limit: 0, log: false)
  def spin(n)
    s = 0
    i = 0
    while i < n
      s += i & 7
      i += 1
    end
    s
  end

  def never(x)
    y = x + 1 # NEVER
    y
  end

  def dive(n, &blk) = n.zero? ? blk.call : dive(n - 1, &blk)

  def hit_me(k)
    v = k * 2 # HIT
    v
  end

  def cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  $stdout.sync = true
  puts "ready"
  while (line = $stdin.gets)
    case line.strip
    when "spin"
      t = cpu
      200.times { spin(50_000) }
      puts cpu - t
    when "hit"
      t = now
      dive(48) { hit_me(1) }
      puts now - t
    when "raise"
      t = now
      dive(48) do
        raise "boom"
      rescue => e
        Rbscope.report(e)
      end
      puts now - t
    end
  end
RUBY

Dir.mktmpdir do |dir|
  file = File.join(dir, "target.rb")
  File.write(file, target)
  line_of = ->(mark) { target.lines.index { |l| l.include?(mark) } + 1 }
  env = { "RBSCOPE_STORE" => File.join(dir, "store.db"), "XDG_RUNTIME_DIR" => dir }
  Open3.popen2(env, "ruby", "-I#{lib}", file, chdir: dir) do |stdin, stdout, app|
    abort "the target did not start" unless stdout.gets&.strip == "ready"
    ask = lambda do |cmd|
      stdin.puts cmd
      Float(stdout.gets)
    end
    arm = lambda do |mark, *args|
      i, _o, e, t = Open3.popen3(env, rbscope, "break", "-p", app.pid.to_s, "#{file}:#{line_of.(mark)}", *args)
      said = e.gets.to_s
      abort "rbscope break: #{said}" unless said.include?("breakpoint set")
      [i, e, t]
    end
    ask.("spin") # warm up

    off = []
    on = []
    runs.times do
      off << ask.("spin")
      _i, _e, t = arm.("# NEVER", "--for", "10m")
      on << ask.("spin")
      Process.kill("KILL", t.pid)
      t.join
    end
    base = off.min
    armed = on.min
    puts "== the app's other code, a breakpoint armed on a line that never runs (min of #{runs})"
    puts format("no breakpoint                 %.3fs CPU", base)
    puts format("breakpoint armed elsewhere    %.3fs CPU  %.3fx", armed, armed / base)
    result("break armed, other code", format("%.3fx", armed / base))

    hits = []
    _i, _e, t = arm.("# HIT", "--max", runs.to_s)
    runs.times { hits << ask.("hit") }
    t.join
    raises = Array.new(runs) { ask.("raise") }
    median = ->(a) { a.sort[a.size / 2] }
    h = median.(hits)
    r = median.(raises)
    puts
    puts "== a hit 50 frames deep beside an exception captured and reported at the same depth (median of #{runs})"
    puts format("breakpoint hit (snapshot stored)      %.2f ms", h * 1000)
    puts format("exception raised, captured, reported  %.2f ms", r * 1000)
    puts format("ratio                                 %.2fx", h / r)
    result("break hit vs exception report", format("%.2fx", h / r))
    stdin.close
  end
end
