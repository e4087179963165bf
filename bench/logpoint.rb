# frozen_string_literal: true

# `rbscope log` and `--every` against a Ruby process with the agent: what each hit of a line in
# a hot loop costs the app. The target runs a 1,000,000-iteration `while` loop whose body line
# is hooked; the CPU time of the loop, minimum of RUNS, in alternating rounds:
# 1. no hook;
# 2. a logpoint reading one local with `--every 1h` (the first hit goes through, every other
#    hit is skipped inside the app: the TracePoint's block and one call into the agent);
# 3. a logpoint reading one local at every hit: read, rendered by the agent and posted to the
#    client's mailbox; while the mailbox holds 1,000 hits the client has not taken, a hit is
#    dropped and counted before anything is read (most of this loop's hits).
# And what a hit that is logged costs: a 500-iteration loop (fewer hits than the mailbox
# holds, none dropped) with the logpoint at every hit, beside the same loop without a hook.
# Printed: seconds per loop and nanoseconds per hit above the loop without a hook.
#
#   ruby bench/logpoint.rb [RUNS] [RBSCOPE_BINARY]
# The `ruby` on PATH runs the target.
require "open3"
require "tmpdir"

def result(row, cell)
  puts "RESULT\t#{row}\t#{cell}" if ENV["BENCH_RESULTS"]
end

runs = Integer(ARGV.fetch(0, "5"))
rbscope = ARGV.fetch(1, File.expand_path("../gem/lib/rbscope/rbscope-cli", __dir__))
abort "build the CLI first: scripts/build" unless File.executable?(rbscope)
lib = File.expand_path("../gem/lib", __dir__)
iterations = 1_000_000

target = <<~'RUBY'
  require "rbscope"
  Rbscope.start(log: false)
  def spin(n)
    i = 0
    while i < n
      i += 1 # HOT
    end
    i
  end

  def cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
  $stdout.sync = true
  puts "ready"
  while (line = $stdin.gets)
    t = cpu
    spin(Integer(line))
    puts cpu - t
  end
RUBY

Dir.mktmpdir do |dir|
  file = File.join(dir, "target.rb")
  File.write(file, target)
  at = "#{file}:#{target.lines.index { |l| l.include?('# HOT') } + 1}"
  env = { "RBSCOPE_STORE" => File.join(dir, "store.db"), "XDG_RUNTIME_DIR" => dir }
  Open3.popen2(env, "ruby", "-I#{lib}", file, chdir: dir) do |stdin, stdout, app|
    abort "the target did not start" unless stdout.gets&.strip == "ready"
    n = iterations
    spin = lambda do
      stdin.puts n
      Float(stdout.gets)
    end
    # Sets a logpoint, runs the loop, ends the logpoint (SIGTERM: the agent says what it did).
    logged = lambda do |*args|
      _i, o, e, t = Open3.popen3(env, rbscope, "log", "-p", app.pid.to_s, at, "i", *args)
      said = e.gets.to_s
      abort "rbscope log: #{said}" unless said.include?("logpoint set")
      reader = Thread.new { o.read } # the client keeps reading, as a terminal would
      took = spin.()
      Process.kill("TERM", t.pid)
      ended = e.read.lines.last.to_s.strip
      t.join
      reader.join
      [took, ended]
    end
    spin.() # warm up

    off = []
    skipped = []
    each = []
    ends = {}
    runs.times do
      off << spin.()
      took, ends[:every] = logged.("--every", "1h")
      skipped << took
      took, ends[:each] = logged.()
      each << took
    end
    n = 500
    small_off = []
    small_on = []
    runs.times do
      small_off << spin.()
      took, ends[:small] = logged.()
      small_on << took
    end
    base = off.min
    per_hit = ->(t) { (t - base) / iterations * 1e9 }
    logged_hit = (small_on.min - small_off.min) / n * 1e9
    puts "== a 1,000,000-iteration loop whose body line is hooked (CPU, min of #{runs})"
    puts format("no hook                            %.3fs", base)
    puts format("logpoint, --every 1h (skipped)     %.3fs  %.2fx  %.0f ns a hit", skipped.min,
                skipped.min / base, per_hit.(skipped.min))
    puts format("logpoint at every hit              %.3fs  %.2fx  %.0f ns a hit", each.min,
                each.min / base, per_hit.(each.min))
    puts format("a logged hit (500 hits, none dropped)        %.0f ns a hit", logged_hit)
    puts "last --every run: #{ends[:every]}"
    puts "last every-hit run: #{ends[:each]}"
    puts "last 500-hit run: #{ends[:small]}"
    result("logpoint skipped by --every, per hit", format("%.0f ns", per_hit.(skipped.min)))
    result("logpoint at every hit of a hot loop, per hit", format("%.0f ns", per_hit.(each.min)))
    result("logged hit", format("%.0f ns", logged_hit))
    stdin.close
  end
end
