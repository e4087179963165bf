# frozen_string_literal: true

# A program for the live heap tests: it starts the agent, says "ready PID", then runs commands
# read from stdin, one per line, answering "done COMMAND [RESULT]" after each.
require "rbscope"
require "json"
require "objspace"
Rbscope.start

module Census
  class Widget
    def initialize(i) = @name = "widget #{i}"
  end
end

module LiveLeak
  class Item
    def initialize(i) = @payload = "item #{i} " + ("z" * 40) # ITEM_LINE
  end
  ITEMS = []
end

KEEP = Array.new(1234) { |i| Census::Widget.new(i) }
$stdout.sync = true
puts "ready #{Process.pid}"
leaker = nil
while (line = $stdin.gets)
  cmd, *args = line.split
  case cmd
  when "trace" # allocation tracing on, from the program itself
    ObjectSpace.trace_object_allocations_start
    puts "done trace"
  when "items" # allocate N leaked items
    n = Integer(args[0])
    n.times { |i| LiveLeak::ITEMS << LiveLeak::Item.new(i) }
    puts "done items #{LiveLeak::ITEMS.size}"
  when "ticker" # a thread that wakes every millisecond (its stack must survive in a dump's child)
    Thread.new { loop { sleep 0.001 } }
    puts "done ticker"
  when "leak" # keep leaking in the background
    leaker = Thread.new { loop { 300.times { |i| LiveLeak::ITEMS << LiveLeak::Item.new(i) }; sleep 0.05 } }
    puts "done leak"
  when "both" # Rbscope.heap_dump and Ruby's own dump_all of the same heap, then count_objects
    GC.start
    GC.disable
    ours = Rbscope.heap_dump(args[0])
    counts = ObjectSpace.count_objects
    File.open(args[1], "w") { |f| ObjectSpace.dump_all(output: f) }
    GC.enable
    puts "done both #{JSON.generate(ours: ours, counts: counts)}"
  when "count"
    puts "done count #{JSON.generate(Rbscope.count_objects(args))}"
  end
end
