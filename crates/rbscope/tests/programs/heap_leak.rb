# A process that leaks, dumped three times: the test case for `rbscope heap`.
# Between dumps it adds ENTRIES Leak::Entry objects (each with its own payload string) to a
# constant array, and allocates and drops as many Temp objects. Allocation tracing is on, so
# every dump line carries file, line and generation. Usage: ruby heap_leak.rb DIR ENTRIES
require "objspace"
ObjectSpace.trace_object_allocations_start

module Leak
  class Entry
    def initialize(i)
      @id = i
      @payload = "payload #{i} " + ("x" * 150) # PAYLOAD_LINE
    end
  end

  CACHE = []

  def self.fill(n, from)
    n.times { |i| CACHE << Entry.new(from + i) } # ENTRY_LINE
  end
end

class Temp
  def initialize = (@s = "temp" * 20)
end

def churn(n) = n.times.map { Temp.new }.size

# The same text in 500 String objects: what `heap strings` finds.
TAGS = Array.new(500) { "dup-tag-" + ("y" * 30) }

def dump(path)
  GC.start
  File.open(path, "w") { |f| ObjectSpace.dump_all(output: f) }
end

dir, n = ARGV[0], Integer(ARGV[1])
dump("#{dir}/1.json")
Leak.fill(n, 0)
churn(n)
dump("#{dir}/2.json")
Leak.fill(n, n)
churn(n)
dump("#{dir}/3.json")
puts "dumped"
