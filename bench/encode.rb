# frozen_string_literal: true

# Encoding benchmark: time to report an exception whose frame holds a graph of SIZE objects
# (walk + redaction + encode + queue; the disk write happens on the agent's thread), side by
# side with Marshal.dump of the same graph. Prints the median of RUNS.
#
#   ruby bench/encode.rb [SIZE] [RUNS]
require "rbscope"
require "tmpdir"
require_relative "graph"

size = Integer(ARGV.fetch(0, "20000"))
runs = Integer(ARGV.fetch(1, "15"))
store = File.join(Dir.mktmpdir("rbscope-bench"), "bench.db")
Rbscope.start(store: store, rate_limit: 0, max_objects: size * 2, max_depth: 50,
              max_collection_items: size, control_socket: false, log: false)

graph = BenchGraph.build(size)
exc = BenchGraph.failure_with(graph)
times = Array.new(runs) do
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  id = Rbscope.report(exc)
  t1 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  raise "not stored" unless id

  t1 - t0
end
marshal = Array.new(runs) do
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  Marshal.dump(graph)
  Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
end
Rbscope.flush(30)
sizes = `#{File.expand_path("../gem/exe/rbscope", __dir__)} list --json -n 1 --store #{store}`
bytes = sizes[/"size": (\d+)/, 1]
median = ->(a) { a.sort[a.size / 2] * 1000 }
puts format("graph %d objects: rbscope report %.2f ms, Marshal.dump %.2f ms, snapshot %s bytes",
            size, median.(times), median.(marshal), bytes)
