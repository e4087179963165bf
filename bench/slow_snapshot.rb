# frozen_string_literal: true

# What `slow_snapshot` costs a request that is not slow: a puma + Rack app (one tiny endpoint,
# Rbscope::Middleware in front) served with slow_snapshot off and with slow_snapshot: 10, side
# by side, loaded by wrk over loopback; rounds alternate off/on, each in a fresh puma.
#   ruby bench/slow_snapshot.rb [ROUNDS] [SECONDS]     (needs scripts/build, wrk, Debian's puma)
# Prints requests per second of each round, then the best and the median of each mode and
# the ratio off/on (1.00x: no cost; the issue's target is at most 1.02x).
require "socket"
require "tmpdir"

rounds = Integer(ARGV.fetch(0, "5"))
seconds = Integer(ARGV.fetch(1, "10"))
lib = File.expand_path("../gem/lib", __dir__)
puma = "/usr/bin/puma"
abort "needs wrk (apt-get install wrk)" unless system("command -v wrk >/dev/null")
abort "needs Debian's puma (#{puma})" unless File.exist?(puma)

dir = Dir.mktmpdir("rbscope-slow-bench")
File.write(File.join(dir, "config.ru"), <<~RU)
  require "rbscope"
  Rbscope.start(slow_snapshot: ENV["BENCH_SLOW"] == "on" ? 10 : false, log: false)
  use Rbscope::Middleware
  run lambda { |env| [200, { "content-type" => "text/plain" }, ["ok"]] }
RU

def free_port
  s = TCPServer.new("127.0.0.1", 0)
  s.addr[1]
ensure
  s&.close
end

# Requests per second of one puma with `mode`, after a 2-second warm-up.
def measure(mode, dir, lib, puma, seconds)
  port = free_port
  env = { "BENCH_SLOW" => mode, "RBSCOPE_STORE" => File.join(dir, "bench.db"),
          "XDG_RUNTIME_DIR" => dir, "RUBYOPT" => nil }
  pid = spawn(env, "ruby", "-I#{lib}", puma, "-q", "-b", "tcp://127.0.0.1:#{port}", "-t", "4:4",
              "-e", "production", File.join(dir, "config.ru"), out: File::NULL, err: File::NULL)
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 30
  begin
    TCPSocket.new("127.0.0.1", port).close
  rescue SystemCallError
    raise "puma did not start" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

    sleep 0.1
    retry
  end
  url = "http://127.0.0.1:#{port}/"
  system("wrk", "-t1", "-c8", "-d2s", url, out: File::NULL)
  out = IO.popen(["wrk", "-t1", "-c8", "-d#{seconds}s", url], &:read)
  Float(out[/Requests\/sec:\s+([\d.]+)/, 1])
ensure
  if pid
    Process.kill("TERM", pid)
    Process.wait(pid)
  end
end

results = { "off" => [], "on" => [] }
rounds.times do |i|
  %w[off on].each do |mode|
    rps = measure(mode, dir, lib, puma, seconds)
    results[mode] << rps
    puts format("round %d  slow_snapshot %-3s  %8.0f requests/s", i + 1, mode, rps)
  end
end
median = ->(a) { a.sort[a.size / 2] }
off_best, on_best = results["off"].max, results["on"].max
off_med, on_med = median.(results["off"]), median.(results["on"])
puts format("best    off %8.0f  on %8.0f  cost %.3fx", off_best, on_best, off_best / on_best)
puts format("median  off %8.0f  on %8.0f  cost %.3fx", off_med, on_med, off_med / on_med)
