# frozen_string_literal: true

# Live tracing cost, side by side in one run: the same loop of N calls of a trivial method
# (bench/trace_target.rb) with no agent, with the agent started and nothing attached, and
# while `rbscope trace` is attached with a selector on a method never called, a selector on
# the hot method, and the firehose. Each mode runs RUNS times in fresh processes; the minimum
# loop time counts. For attached modes the CLI's own summary gives the events delivered (a
# call and its return are two events) and lost; "attach" is the CLI's time from start to the
# first event, against the idle and against the busy program.
#
#   ruby bench/trace.rb [N] [RUNS]          (needs scripts/build first)
# The `ruby` on PATH runs the traced programs (bench/rubies puts the Ruby under test first).
require "open3"
require "tmpdir"

# bench/rubies sets BENCH_RESULTS=1: after the human output, the key figures again, one
# "RESULT<TAB>row<TAB>cell" line each, so that it can put every Ruby's run in one table.
def result(row, cell)
  puts "RESULT\t#{row}\t#{cell}" if ENV["BENCH_RESULTS"]
end

n = Integer(ARGV.fetch(0, "5000000"))
runs = Integer(ARGV.fetch(1, "5"))
root = File.expand_path("..", __dir__)
cli = File.join(root, "gem/lib/rbscope/rbscope-cli")
abort "build first: scripts/build" unless File.executable?(cli)
target = File.join(__dir__, "trace_target.rb")

Run = Struct.new(:seconds, :summary)

# A trace's output goes to /dev/null unless its arguments name a file (-o); with `pipe`, its
# standard output is a pipe that a thread here reads and throws away, as a terminal pager or
# `| grep` would take it.
def run_once(root, cli, target, n, mode, trace_args, pipe = false)
  stdin, stdout, wait = Open3.popen2("ruby", "-I#{root}/gem/lib", target, mode, n.to_s)
  pid = Integer(stdout.gets[/ready (\d+)/, 1])
  summary = nil
  drain = nil
  if trace_args
    out_r, out_w = IO.pipe
    sink = trace_args.include?("-o") || pipe ? [] : ["-o", "/dev/null"]
    if pipe
      lines_r, lines_w = IO.pipe
      drain = Thread.new do
        buf = String.new(capacity: 1 << 20)
        nil while lines_r.read(1 << 20, buf)
        lines_r.close
      end
    end
    tracer = Process.spawn(cli, "trace", "-p", pid.to_s, *trace_args, *sink,
                           err: out_w, out: pipe ? lines_w : File::NULL)
    out_w.close
    lines_w&.close
    line = out_r.gets
    abort "rbscope trace did not attach: #{line}" unless line&.start_with?("*** attached")
  end
  stdin.puts "go"
  seconds = Float(stdout.gets[/done ([\d.]+)/, 1])
  if trace_args
    Process.kill("INT", tracer)
    Process.wait(tracer)
    drain&.join
    summary = out_r.read.lines.grep(/detached|ended/).first.to_s.strip
    out_r.close
  end
  stdin.close
  wait.value
  Run.new(seconds, summary)
end

def best(runs, &block)
  all = Array.new(runs) { block.call }
  all.min_by(&:seconds)
end

jsonl = File.join(Dir.tmpdir, "rbscope-bench-trace-#{Process.pid}.jsonl")
at_exit { File.delete(jsonl) if File.exist?(jsonl) }
modes = [
  ["no agent", "none", nil],
  ["agent started, nothing attached", "agent", nil],
  ["selector on a method never called", "agent", ["-m", "Hot#never"]],
  ["selector on the hot method", "agent", ["-m", "Hot#hot"]],
  ["firehose", "agent", ["-f"]],
  ["firehose, JSON lines to a file", "agent", ["-f", "--format", "jsonl", "-o", jsonl]],
  ["firehose, text to a pipe", "agent", ["-f"], true],
]
puts "== #{n} calls of a trivial method, minimum of #{runs} runs (ruby #{RUBY_VERSION})"
base = nil
measured = {} # label => [seconds, ratio, events, lost, events per second]
modes.each do |label, mode, args, pipe|
  r = best(runs) { run_once(root, cli, target, n, mode, args, pipe) }
  base ||= r.seconds
  line = format("%-36s %8.3fs  %6.2fx", label, r.seconds, r.seconds / base)
  if r.summary
    events = r.summary[/(\d+) events/, 1].to_i
    lost = r.summary[/(\d+) events lost/, 1].to_i
    line += format("  delivered %d events (%.2fM/s), lost %d", events, events / r.seconds / 1e6, lost)
  end
  measured[label] = [r.seconds, r.seconds / base, events, lost, events && events / r.seconds]
  puts line
end

# Attach latency: from the CLI's start to its first event, idle program and busy program.
def attach_ms(root, cli, busy)
  code = if busy
           "class B; def tick = nil; end; b = B.new; $stdout.sync = true; puts \"ready \#{Process.pid}\"; loop { b.tick; 500.times { _ = [1] * 8 } }"
         else
           "class B; def tick = nil; end; b = B.new; $stdout.sync = true; puts \"ready \#{Process.pid}\"; loop { b.tick; sleep 0.001 }"
         end
  _stdin, stdout, wait = Open3.popen2("ruby", "-I#{root}/gem/lib", "-rrbscope", "-e", "Rbscope.start(store: '/tmp/rbscope-bench-attach.db'); #{code}")
  begin
    pid = Integer(stdout.gets[/ready (\d+)/, 1])
    err = IO.popen([cli, "trace", "-p", pid.to_s, "-m", "B#tick", "--for", "1", "-o", "/dev/null", err: [:child, :out]], &:read)
  ensure
    # Also when this script is stopped meanwhile (bench/rubies' timeout): the program would
    # otherwise loop forever.
    Process.kill("KILL", wait.pid)
    wait.value
  end
  Float(err[/first after ([\d.]+) ms/, 1] || "NaN")
end

idle = Array.new(runs) { attach_ms(root, cli, false) }
busy = Array.new(runs) { attach_ms(root, cli, true) }
puts format("attach to first event, idle app: median %.1f ms, worst %.1f ms", idle.sort[idle.size / 2], idle.max)
puts format("attach to first event, busy app: median %.1f ms, worst %.1f ms", busy.sort[busy.size / 2], busy.max)

puts "TITLE\ttrace: #{n} calls of a trivial method, minimum of #{runs} runs" if ENV["BENCH_RESULTS"]
measured.each do |label, (seconds, ratio, events, lost, rate)|
  result(label, label == "no agent" ? format("%.3fs", seconds) : format("%.3fs %.2fx", seconds, ratio))
  result("#{label}: events delivered, lost", format("%d (%.2fM/s), lost %d", events, rate / 1e6, lost)) if events
end
result("attach to first event, idle app: median / worst", format("%.1f / %.1f ms", idle.sort[idle.size / 2], idle.max))
result("attach to first event, busy app: median / worst", format("%.1f / %.1f ms", busy.sort[busy.size / 2], busy.max))
# The targets of docs/PERFORMANCE.md ("Live tracing"); the human output above leaves them to
# the reader, the table says yes or no.
ratio = ->(label) { measured[label][1] }
hot, fire = measured["selector on the hot method"], measured["firehose"]
[
  ["agent started, nothing attached: within 2%", ratio["agent started, nothing attached"] <= 1.02],
  ["selector on a method never called: within 5%", ratio["selector on a method never called"] <= 1.05],
  ["hot method: at most 8x, every call delivered", hot[1] <= 8 && hot[3].zero?],
  ["firehose: at most 10x, at least 3M events/s delivered", fire[1] <= 10 && fire[4] >= 3e6],
  *["firehose, JSON lines to a file", "firehose, text to a pipe"].map do |label|
    m = measured[label]
    ["#{label}: nothing lost at 20M events/s or more, at most 6x", m[3].zero? && m[4] >= 20e6 && m[1] <= 6]
  end,
  ["attach, idle app: under 50 ms (median)", idle.sort[idle.size / 2] < 50],
  ["attach, busy app: under 150 ms (median)", busy.sort[busy.size / 2] < 150],
].each { |name, ok| result("target met: #{name}", ok ? "yes" : "no") }
