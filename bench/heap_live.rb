# frozen_string_literal: true

# Live heap dump and census (issue [8/11]): `Rbscope.heap_dump` (a forked child writes the
# file; the same code `rbscope heap dump -p PID` runs in the agent) against
# `ObjectSpace.dump_all` on the same heap of about OBJECTS objects, in one process, side by
# side; and `Rbscope.count_objects` (every class) against `ObjectSpace.each_object(C).count`
# (one class).
#
# The app's pause is measured twice: as reported (the fork, or the whole dump_all) and as the
# longest gap seen by a ticker thread that wakes every millisecond (what the app's threads
# actually felt). "Complete" is the time until the file is written.
#
#   ruby -Igem/lib bench/heap_live.rb [OBJECTS] [RUNS]     (after scripts/build)
require "rbscope"
require "objspace"
require "tmpdir"

# bench/rubies sets BENCH_RESULTS=1: after the human output, the key figures again, one
# "RESULT<TAB>row<TAB>cell" line each, so that it can put every Ruby's run in one table.
def result(row, cell)
  puts "RESULT\t#{row}\t#{cell}" if ENV["BENCH_RESULTS"]
end

objects = Integer(ARGV[0] || 2_000_000)
runs = Integer(ARGV[1] || 3)
Rbscope.start(store: File.join(Dir.tmpdir, "rbscope-bench-heap-live.db"))

# A mixed heap: objects with ivars, strings, arrays, hashes.
class Account
  def initialize(i)
    @id = i
    @name = "account #{i}"
    @tags = [i.to_s, "tag"]
  end
end
KEEP = Array.new(objects / 4) { |i| Account.new(i) }
GC.start
live = ObjectSpace.count_objects.then { |c| c[:TOTAL] - c[:FREE] }

# The longest stall of a thread that wants to run every millisecond, while `block` runs.
def felt_pause
  max = 0.0
  stop = false
  ticker = Thread.new do
    last = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    until stop
      sleep 0.001
      now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      max = [max, now - last].max
      last = now
    end
  end
  sleep 0.01
  result = yield
  stop = true
  ticker.join
  [result, max * 1000]
end

dir = Dir.mktmpdir("rbscope-bench-heap-live")
rows = Hash.new { |h, k| h[k] = [] }
runs.times do |k|
  path = File.join(dir, "ruby-#{k}.json")
  (t, felt) = felt_pause do
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    File.open(path, "w") { |f| ObjectSpace.dump_all(output: f) }
    Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  end
  rows[:ruby] << { pause: t * 1000, felt: felt, complete: t * 1000, bytes: File.size(path) }
  File.delete(path)

  path = File.join(dir, "rbscope-#{k}.json")
  (r, felt) = felt_pause { Rbscope.heap_dump(path) }
  rows[:rbscope] << { pause: r[:pause_ms], felt: felt, complete: r[:total_ms], bytes: r[:bytes], objects: r[:objects] }
  File.delete(path)
end

count_all = Array.new(runs) do
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  Rbscope.count_objects
  (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000
end.min
count_one = Array.new(runs) do
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  ObjectSpace.each_object(Account).count
  (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000
end.min

best = ->(list, key) { list.map { _1[key] }.min }
ruby, ours = rows[:ruby], rows[:rbscope]
puts "live heap, #{live.to_s.reverse.scan(/\d{1,3}/).join(",").reverse} objects (#{RUBY_DESCRIPTION}), best of #{runs}"
puts format("%-28s %12s %12s %12s %10s", "", "app pause", "felt (tick)", "complete", "file")
puts format("%-28s %9.1f ms %9.1f ms %9.1f ms %7.0f MB", "ObjectSpace.dump_all", best[ruby, :pause], best[ruby, :felt], best[ruby, :complete], ruby[0][:bytes] / 1e6)
puts format("%-28s %9.1f ms %9.1f ms %9.1f ms %7.0f MB", "Rbscope.heap_dump (fork)", best[ours, :pause], best[ours, :felt], best[ours, :complete], ours[0][:bytes] / 1e6)
puts format("pause: %.0fx shorter; complete: %.2fx of dump_all's time",
            best[ruby, :pause] / best[ours, :pause], best[ours, :complete] / best[ruby, :complete])
puts format("census of every class (Rbscope.count_objects): %.1f ms; ObjectSpace.each_object(Account).count (one class): %.1f ms",
            count_all, count_one)
targets = [
  ["app pause under 50 ms", best[ours, :felt] < 50],
  ["complete in at most half of dump_all's time", best[ours, :complete] <= best[ruby, :complete] / 2],
  ["census of every class under 200 ms", count_all < 200],
]
targets.each { |name, ok| puts "#{ok ? "PASS" : "FAIL"}  #{name}" }

puts "TITLE\tlive heap: about #{objects} objects, best of #{runs}" if ENV["BENCH_RESULTS"]
result("live objects", live.to_s.reverse.scan(/\d{1,3}/).join(",").reverse)
result("Rbscope.heap_dump: app pause (reported)", format("%.1f ms", best[ours, :pause]))
result("Rbscope.heap_dump: felt (tick)", format("%.1f ms", best[ours, :felt]))
result("Rbscope.heap_dump: complete", format("%.1f ms", best[ours, :complete]))
result("ObjectSpace.dump_all: complete (= app pause)", format("%.1f ms", best[ruby, :complete]))
result("ObjectSpace.dump_all: felt (tick)", format("%.1f ms", best[ruby, :felt]))
result("pause shorter than dump_all's", format("%.0fx", best[ruby, :pause] / best[ours, :pause]))
result("complete, of dump_all's time", format("%.2fx", best[ours, :complete] / best[ruby, :complete]))
result("file (Rbscope / dump_all)", format("%.0f / %.0f MB", ours[0][:bytes] / 1e6, ruby[0][:bytes] / 1e6))
result("census of every class (Rbscope.count_objects)", format("%.1f ms", count_all))
result("ObjectSpace.each_object(Account).count", format("%.1f ms", count_one))
targets.each { |name, ok| result("target met: #{name}", ok ? "yes" : "no") }
