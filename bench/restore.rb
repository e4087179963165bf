# frozen_string_literal: true

# Restore benchmark: rebuilding a snapshot of about SIZE objects as Ruby objects (native
# decode + signature check + transfer to Ruby + object building), side by side with Marshal.load of the
# same graph. Prints medians of RUNS.
#
#   ruby bench/restore.rb [SIZE] [RUNS]
require "rbscope"
require "rbscope/restore"
require "tmpdir"
require_relative "graph"

size = Integer(ARGV.fetch(0, "20000"))
runs = Integer(ARGV.fetch(1, "9"))
store = File.join(Dir.mktmpdir("rbscope-bench"), "bench.db")
Rbscope.start(store: store, rate_limit: 0, max_objects: size * 2, max_depth: 50,
              max_collection_items: size, control_socket: false, log: false)

graph = BenchGraph.build(size)
id = Rbscope.report(BenchGraph.failure_with(graph))
Rbscope.flush(30)
dump = Marshal.dump(graph)
median = ->(a) { a.sort[a.size / 2] * 1000 }
clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
objects = 0
restore = Array.new(runs) do
  t0 = clock.call
  r = Rbscope::Restore.load(id, store: store)
  t = clock.call - t0
  objects = r.instance_variable_get(:@built).size
  t
end
marshal = Array.new(runs) do
  t0 = clock.call
  Marshal.load(dump)
  clock.call - t0
end

puts format("restore of %d objects: rbscope %.1f ms, Marshal.load %.1f ms", objects,
            median.(restore), median.(marshal))
