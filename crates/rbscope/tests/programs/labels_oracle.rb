# Prints Ruby's own frame labels for each kind of frame rbscope names: for every case, the
# frames of `caller_locations(0)` that are in this file, innermost first, as
# `path:lineno label base_label` (path as this file's basename). The outputs per Ruby version
# are in tests/fixtures/labels/ruby-X.Y.txt, written by running this on each WASI Ruby:
#   for v in 3.2 3.3 3.4 4.0; do
#     scripts/wasm-ruby $v crates/rbscope/tests/programs/labels_oracle.rb \
#       > crates/rbscope/tests/fixtures/labels/ruby-$v.txt
#   done
$cases = []

def here(name)
  frames = caller_locations(1).select { |l| l.absolute_path == __FILE__ || l.path == __FILE__ }
  $cases << [name, frames.map { |l| "#{File.basename(l.path)}:#{l.lineno} #{l.label} #{l.base_label}" }]
end

class Foo
  def bar = here("instance method Foo#bar")

  def self.baz = here("singleton method def self.baz")

  class << self
    def in_eigen = here("method in class << self")

    define_method(:defined_in_eigen) { here("define_method in class << self") }
  end

  def with_block
    [1].each { here("block in a method") }
  end

  def with_nested_block
    [1].each { [2].each { here("nested block") } }
  end

  define_method(:dm) { [1].each { here("block inside define_method") } }
  define_method(:dm_plain) { here("define_method method") }

  def rescuer
    raise "x"
  rescue
    here("rescue clause")
  end

  def ensurer
    1
  ensure
    here("ensure clause")
  end
end

module Helpers
  module_function

  def mf = here("module_function method")
end

module Shout
  refine String do
    def shout = here("refinement method String#shout")
  end
end

using Shout

module Outer
  class Inner
    def go = here("Outer::Inner#go")
  end
end

Anon = Class.new { def anon = here("method on an anonymous class") }
anon = Class.new { def anon = here("method on an anonymous class (never named)") }

Foo.new.bar
Foo.baz
Foo.in_eigen
Foo.defined_in_eigen
Foo.new.with_block
Foo.new.with_nested_block
Foo.new.dm
Foo.new.dm_plain
Foo.new.rescuer
Foo.new.ensurer
Helpers.mf
"hi".shout
Outer::Inner.new.go
Anon.new.anon
anon.new.anon
here("top level")

puts "# RUBY_VERSION #{RUBY_VERSION}"
$cases.each do |name, frames|
  puts "== #{name}"
  frames.each { |f| puts f }
end
