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
  when "zoo" # objects of every kind the dump describes in its own way
    $zoo = {
      default_proc: Hash.new { |h, k| h[k] = k },
      default_value: Hash.new(5),
      file: File.open(__FILE__),
      floats: [1.5, 1e100, 100.0, 0.1 + 0.2, -0.0],
      shared_string: ("shared " * 20)[3..100],
      shared_array: Array.new(50) { |i| i }[5..40],
      embedded: %w[a b],
      utf8: "\u00e9t\u00e9",
      binary: "\xff\x00".b,
      broken: "\xff\xfe".dup.force_encoding("UTF-8").tap(&:valid_encoding?),
      escapes: "tab\tquote\"back\\slash\nnul\0",
      chilled: eval("'chilled literal'"),
      symbol: :"zoo_dynamic_symbol_#{rand(1 << 30)}",
      singleton: Object.new.tap { |o| o.singleton_class },
      object_id: Object.new.tap(&:object_id),
      frozen: Object.new.freeze,
      struct: Struct.new(:a, :b).new(1, 2),
      anonymous: Class.new(StandardError),
      complex: 1r + 2i,
      big: 2**100,
    }
    # More shapes than a class may vary into: the last objects are "too complex" (3.2+).
    $zoo[:variants] = Array.new(12) { |i| Census::Widget.new(i).tap { |w| w.instance_variable_set(:"@v#{i}", i) } }
    puts "done zoo"
  when "both" # Rbscope.heap_dump and Ruby's own dump_all of the same heap, then count_objects
    ObjectSpace.count_objects # 4.0 makes its type names' symbols on the first call
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
