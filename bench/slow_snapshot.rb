# frozen_string_literal: true

# What `slow_snapshot` costs a request that is not slow: a puma + Rack app (one tiny endpoint,
# Rbscope::Middleware in front) served with slow_snapshot off and with slow_snapshot: 10, side
# by side, loaded by wrk over loopback; rounds alternate off/on, each in a fresh puma.
#   ruby bench/slow_snapshot.rb [ROUNDS] [SECONDS]     (needs scripts/build, wrk, Debian's puma)
#   ruby bench/slow_snapshot.rb callgrind [REQUESTS]    (instructions; needs valgrind, not wrk)
# Prints, for each round, requests per second and the CPU time puma spent per request (its
# utime + stime from /proc over the measured run: less moved by other load on the machine than
# throughput), then the median of each mode and their ratios (1.00x: no cost; the issue's
# target is at most 1.02x).
require "socket"
require "tmpdir"

# `ruby bench/slow_snapshot.rb inproc on|off N`: N calls of the same middleware-wrapped app in
# this process, no server, for an instruction count that machine noise cannot move:
#   valgrind --tool=callgrind --callgrind-out-file=/dev/null ruby bench/slow_snapshot.rb inproc on 100000
# (and `off`); the difference divided by N is what a watched request that is not slow costs.
if ARGV[0] == "inproc"
  $LOAD_PATH.unshift(File.expand_path("../gem/lib", __dir__))
  require "rbscope"
  Rbscope.start(slow_snapshot: ARGV.fetch(1) == "on" ? 10 : false, log: false)
  app = Rbscope::Middleware.new(->(_env) { [200, {}, ["ok"]] })
  env = { "REQUEST_METHOD" => "GET", "PATH_INFO" => "/", "HTTP_X_REQUEST_ID" => "r-1" }
  Integer(ARGV.fetch(2)).times { app.call(env) }
  exit
end

rounds = ARGV[0] == "callgrind" ? 0 : Integer(ARGV.fetch(0, "5"))
seconds = ARGV[0] == "callgrind" ? 0 : Integer(ARGV.fetch(1, "10"))
lib = File.expand_path("../gem/lib", __dir__)
puma = "/usr/bin/puma"
abort "needs wrk (apt-get install wrk)" unless ARGV[0] == "callgrind" || system("command -v wrk >/dev/null")
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

# CPU seconds (user + system) the process `pid` has used.
def cpu_seconds(pid)
  fields = File.read("/proc/#{pid}/stat").split(") ", 2)[1].split
  (Integer(fields[11]) + Integer(fields[12])).to_f / 100 # USER_HZ
end

# [requests per second, CPU microseconds per request] of one puma with `mode`, after a
# 2-second warm-up.
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
  cpu = cpu_seconds(pid)
  out = IO.popen(["wrk", "-t1", "-c8", "-d#{seconds}s", url], &:read)
  cpu = cpu_seconds(pid) - cpu
  requests = Integer(out[/(\d+) requests in/, 1])
  [Float(out[/Requests\/sec:\s+([\d.]+)/, 1]), cpu / requests * 1e6]
ensure
  if pid
    Process.kill("TERM", pid)
    Process.wait(pid)
  end
end

# `ruby bench/slow_snapshot.rb callgrind [REQUESTS]`: the same puma app under valgrind's
# callgrind, asked 1,000 and then 1,000 + REQUESTS (default 5,000) requests one after the
# other on one keep-alive connection (Net::HTTP); the difference of the two instruction counts
# divided by REQUESTS is what puma spends per request, which machine noise cannot move.
if ARGV[0] == "callgrind"
  require "net/http"
  extra = Integer(ARGV.fetch(1, "5000"))
  count = lambda do |mode, requests|
    port = free_port
    log = File.join(dir, "callgrind-#{mode}-#{requests}.txt")
    env = { "BENCH_SLOW" => mode, "RBSCOPE_STORE" => File.join(dir, "bench.db"),
            "XDG_RUNTIME_DIR" => dir, "RUBYOPT" => nil }
    pid = spawn(env, "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "ruby", "-I#{lib}",
                puma, "-q", "-b", "tcp://127.0.0.1:#{port}", "-t", "4:4", "-e", "production",
                File.join(dir, "config.ru"), out: File::NULL, err: log)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 120
    begin
      Net::HTTP.start("127.0.0.1", port) { |h| h.get("/") }
    rescue SystemCallError
      raise "puma did not start under valgrind" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.2
      retry
    end
    Net::HTTP.start("127.0.0.1", port) { |h| requests.times { h.get("/") } }
    Process.kill("TERM", pid)
    Process.wait(pid)
    Integer(File.read(log)[/refs:\s+([\d,]+)/, 1].delete(","))
  end
  per = {}
  %w[off on].each do |mode|
    per[mode] = (count.(mode, 1000 + extra) - count.(mode, 1000)) / extra
    puts format("slow_snapshot %-3s  %8d instructions per request", mode, per[mode])
  end
  puts format("cost %.3fx (%d instructions per request)", per["on"].to_f / per["off"], per["on"] - per["off"])
  exit
end

rps = { "off" => [], "on" => [] }
cpu = { "off" => [], "on" => [] }
rounds.times do |i|
  %w[off on].each do |mode|
    r, c = measure(mode, dir, lib, puma, seconds)
    rps[mode] << r
    cpu[mode] << c
    puts format("round %d  slow_snapshot %-3s  %8.0f requests/s  %6.1f us CPU per request", i + 1, mode, r, c)
  end
end
median = ->(a) { a.sort[a.size / 2] }
puts format("median requests/s        off %8.0f  on %8.0f  cost %.3fx",
            median.(rps["off"]), median.(rps["on"]), median.(rps["off"]) / median.(rps["on"]))
puts format("median CPU per request   off %6.1fus  on %6.1fus  cost %.3fx",
            median.(cpu["off"]), median.(cpu["on"]), median.(cpu["on"]) / median.(cpu["off"]))
