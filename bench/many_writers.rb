# frozen_string_literal: true

# Store benchmark: PROCS forked processes each report N exceptions at once into one store
# (rate limit off): a fresh SQLite file, then, when RBSCOPE_BENCH_PG_URL names a PostgreSQL
# database (bench/with-postgres starts a throwaway one), that database, in the same run.
# Prints per store how many were stored, how many dropped (queue full, store errors), and the
# throughput from the first report to the last commit.
#
#   ruby -Igem/lib bench/many_writers.rb [PROCS] [N]
#   bench/with-postgres ruby -Igem/lib bench/many_writers.rb [PROCS] [N]
require "rbscope"
require "tmpdir"

procs = Integer(ARGV.fetch(0, "8"))
n = Integer(ARGV.fetch(1, "1250"))
store = ARGV[2]
unless store
  stores = [File.join(Dir.mktmpdir("rbscope-bench"), "many.db"), ENV["RBSCOPE_BENCH_PG_URL"]].compact
  stores.each { |s| system(RbConfig.ruby, "-I#{File.expand_path('../gem/lib', __dir__)}", __FILE__, procs.to_s, n.to_s, s) || exit(1) }
  exit
end
Rbscope.start(store: store, rate_limit: 0, log: false, control_socket: false)

def fail_once(i)
  order = { id: i, lines: [1, 2, 3], note: "order #{i}" }
  raise ArgumentError, "order #{order[:id]} failed"
rescue => e
  e
end

r, w = IO.pipe
t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
pids = Array.new(procs) do
  fork do
    r.close
    n.times { |i| Rbscope.report(fail_once(i)) }
    Rbscope.flush(60)
    c = Rbscope.counters
    w.puts [c[:stored], c[:queue_full], c[:store_errors]].join(" ")
    exit!(0)
  end
end
w.close
results = r.each_line.map { |l| l.split.map(&:to_i) }
pids.each { |pid| Process.wait(pid) }
t1 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
stored, queue_full, errors = results.transpose.map(&:sum)
rows = `#{File.expand_path("../gem/exe/rbscope", __dir__)} list --json -n 100000 --store #{store}`.scan('"id"').size
kind = store.start_with?("postgres") ? "PostgreSQL" : "SQLite    "
puts format("%s  %d processes x %d reports: %d stored (%d rows in the store), %d dropped (queue full), %d store errors, %.0f snapshots/s",
            kind, procs, n, stored, rows, queue_full, errors, rows / (t1 - t0))
