# Every way of defining and calling code that better backtraces name, as one call chain.
# Run as `ruby constructs.rb MODE`: at the bottom of the chain, MODE "live" reads the stack
# with Rbscope.backtrace, "raise" raises and reads exception.better_backtrace, "park" parks the
# thread (for `rbscope stacks`). Prints one label per line, then whether paths and lines agree
# with Ruby's own backtrace. Anonymous classes' addresses are replaced by names.
require "rbscope"
Rbscope.start(log: false)
MODE = ARGV.fetch(0)
$park = Queue.new

def bottom
  case MODE
  when "live"
    $result = [Rbscope.backtrace, caller_locations(0)]
  when "raise"
    raise "bottom"
  else
    ALIASES.call.each { |from, to| puts "alias #{to} #{from}" }
    puts "parked #{Process.pid}"
    $stdout.flush
    $park.pop
  end
end

class ClassA
  def hello = ModuleB::ClassB.new.hello
end

module ModuleB
  class ClassB
    def hello = ModuleC.hello
  end
end

module ModuleC
  def self.hello = ClassWithStaticMethod.hello
end

class ClassWithStaticMethod
  class << self
    def hello = UsesModuleD.new.go
  end
end

module ModuleD
  module_function

  def hello
    [1].each do
      [2].each { OBJ_D.hello }
    end
  end
end

class UsesModuleD
  include ModuleD
  def go = hello
end

class ClassD; end
OBJ_D = ClassD.new
def OBJ_D.hello = ClassE.new.hello

class ClassG; end
module ContainsRefinement
  module RefinesClassG
    refine ClassG do
      def hello = ModuleE.hello
    end
  end
end
using ContainsRefinement::RefinesClassG

class ClassE
  define_method(:hello) { ClassG.new.method(:hello).call }
end

module ModuleE
  module_function

  def hello = ClassH.new.hello
end

class ClassH
  def method_missing(name, *_)
    name == :hello ? ClassF.new.hello(1, 2) : super
  end

  def respond_to_missing?(name, priv = false) = name == :hello || super
end

class ClassF
  def hello(arg1, arg2, test1 = 1, test2: 2)
    1.times { $singleton_owner.singleton_class.hello }
  end
end

$singleton_owner = Object.new
class << $singleton_owner
  def self.hello = $anon_class.new.hello
end

# Anonymous: never assigned to a constant (that would name them).
$anon_class = Class.new do
  def hello = $anon_module.hello
end

$anon_module = Module.new do
  def self.hello = method_with_complex_parameters(1, 2, [3, 4], f: 5)
end

def method_with_complex_parameters(a, b, *c, (d, e), f:, g: 1, **h, &i)
  top_level_hello
end

def top_level_hello = bottom

ALIASES = lambda do
  {
    $anon_class.inspect => "ANON_CLASS",
    $anon_module.inspect => "ANON_MODULE",
    $singleton_owner.inspect => "SINGLETON_OWNER",
  }
end

def names(label) = ALIASES.call.reduce(label) { |l, (from, to)| l.gsub(from, to) }

def report(ours, theirs)
  ours.each { |f| puts names(f.label) }
  same = ours.map { |f| [f.path, f.lineno] } == theirs.map { |l| [l.path, l.lineno] }
  puts "agrees=#{same} ours=#{ours.size} theirs=#{theirs.size}"
end

1.times do
  1.times do
    eval("begin; ClassA.new.hello; rescue => e; $result = e; end", binding, "(eval)", 1)
  end
end
if MODE == "live"
  report(*$result)
elsif MODE == "raise"
  report($result.better_backtrace, $result.backtrace_locations)
end
