# Builds a known heap, writes ObjectSpace.dump_all twice into the directory ARGV[0]
# (heap-1.json, then heap-2.json with LEAKS more Leaked objects) and prints Ruby's own census of
# it as one JSON object on stdout. tests/real_dumps.rs runs it on each WASI Ruby (via
# scripts/wasm-ruby) and checks rbscope-heap's reading of the dumps against this census.
require "objspace"
require "json"

out = ARGV.fetch(0)
LEAKS = 500
LEAVES = 3000
ObjectSpace.trace_object_allocations_start

module Shop
  class Item
    def initialize(sku) = @sku = sku
  end
end

class Leaf
  def initialize(i) = @i = i
end

class Few
  def initialize
    @a = 1
    @b = "few"
  end
end

class Many
  def initialize
    40.times { |i| instance_variable_set(:"@v#{i}", i) }
  end
end

# Ivars set in many orders: more shape variations than Ruby allows, so later ones are too complex.
class Chaotic
  def initialize(k)
    12.times { |i| instance_variable_set(:"@c#{(i + k) % 12}_#{k}", i) }
  end
end

class ChainA
  attr_accessor :next
end

class ChainB
  attr_accessor :next
end

class ChainC; end

class Leaked
  def initialize(i) = @i = i
end

Point = Struct.new(:x, :y)
Coord = Data.define(:lat, :lng)
Shape = Class.new { def go = :went }

def build_chain
  a = ChainA.new
  a.next = ChainB.new
  a.next.next = ChainC.new
  a
end

$chain = build_chain
$items = Array.new(7) { |i| Shop::Item.new("SKU-#{i}") }
$few = Array.new(5) { Few.new }
$many = Array.new(4) { Many.new }
$chaotic = Array.new(20) { |k| Chaotic.new(k) }
$leaves = []
LEAF_LINE = __LINE__ + 1
LEAVES.times { |i| $leaves << Leaf.new(i) }
$points = Array.new(6) { |i| Point.new(i, -i) }
$coords = Array.new(9) { |i| Coord.new(lat: i, lng: i * 2) }
$anon = Array.new(2) { Shape.new }
$leaked = []

heap_string = "h" * 300
$samples = {
  "embedded_string" => "tiny".dup,
  "heap_string" => heap_string,
  "shared_string" => heap_string[10..],
  "frozen_string" => "frozen literal".dup.freeze,
  "fstring" => -"interned fstring",
  "empty_array" => [],
  "small_array" => [1, 2, 3],
  "large_array" => Array.new(500) { |i| i },
  "hash" => { a: 1, b: 2, c: 3 },
  "big_hash" => (1..40).to_h { |i| [i, i.to_s] },
  "dynamic_symbol" => "dyn_#{LEAVES}_symbol".to_sym,
  "proc" => proc { |x| x },
  "lambda" => ->(x) { x * 2 },
  "point" => $points[0],
  "coord" => $coords[0],
  "few" => $few[0],
  "many" => $many[0],
  "chaotic_first" => $chaotic[0],
  "chaotic_last" => $chaotic[-1],
  "item" => $items[0],
  "leaf" => $leaves[0],
  "anonymous" => $anon[0],
  "module" => Shop,
  "class" => Shop::Item,
}
STATIC_SYMBOL = :leaf_static_symbol

CLASSES = [Shop::Item, Leaf, Few, Many, Chaotic, ChainA, ChainB, ChainC, Leaked, Point, Coord]

def census
  {
    "classes" => CLASSES.to_h { |c| [c.name, ObjectSpace.each_object(c).count] },
    "types" => ObjectSpace.count_objects.reject { |k, _| %i[TOTAL FREE].include?(k) },
    "imemo" => ObjectSpace.count_imemo_objects,
    "next_shape_id" => RubyVM.stat(:next_shape_id),
    # Objects (not Ruby's internal ones) allocated on the line that makes the Leafs.
    "at_leaf_line" => ObjectSpace.each_object.count { |o|
      ObjectSpace.allocation_sourceline(o) == LEAF_LINE && ObjectSpace.allocation_sourcefile(o) == __FILE__
    },
    "heaps" => GC.stat_heap.to_h { |_, h| [h[:slot_size], h[:total_allocated_objects] && (h[:total_allocated_objects] - h[:total_freed_objects])] },
  }
end

def sample(obj)
  {
    "dump" => JSON.parse(ObjectSpace.dump(obj)),
    "class" => (Module === obj && !obj.singleton_class? ? obj.class.name : obj.class.name),
    "name" => (obj.name if Module === obj),
    "frozen" => obj.frozen?,
    "bytesize" => (obj.bytesize if String === obj),
    "value" => (obj.to_s if String === obj || Symbol === obj),
    "length" => (obj.length if Array === obj),
    "size" => (obj.size if Hash === obj),
    "ivars" => obj.instance_variables.size,
  }
end

samples = $samples.transform_values { |o| sample(o) }
# The chain is only held by $chain: its samples keep no reference to B or C.
samples["chain_a"] = sample($chain)
samples["chain_b"] = sample($chain.next)
samples["chain_c"] = sample($chain.next.next)
GC.start
GC.disable
dumps = []
[1, 2].each do |n|
  if n == 2
    LEAKS.times { |i| $leaked << Leaked.new(i) }
  end
  before = census
  path = File.join(out, "heap-#{n}.json")
  File.open(path, "w") { |f| ObjectSpace.dump_all(output: f) }
  after = census
  dumps << { "path" => path, "before" => before, "after" => after }
end
GC.enable

puts JSON.generate({
  "ruby_version" => RUBY_VERSION,
  "file" => __FILE__,
  "leaf_line" => LEAF_LINE,
  "leaves" => LEAVES,
  "leaks" => LEAKS,
  "slot_sizes" => GC.stat_heap.map { |_, h| h[:slot_size] },
  "samples" => samples,
  "static_symbol_is_heap_object" => !ObjectSpace.dump(STATIC_SYMBOL).nil?,
  "dumps" => dumps,
})
