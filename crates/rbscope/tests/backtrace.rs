//! `Rbscope.backtrace(thread)` in a real multi-threaded Ruby process: every frame of another
//! thread's stack, Ruby and C, with class, kind of method, block depth, parameters and the
//! line executing; checked against Ruby's own `Thread#backtrace_locations` for the same
//! threads, and for the current thread.

mod common;
use common::*;

const APP: &str = r#"require "rbscope"
module Ext
  refine String do
    def shout(times)
      [1].each { return Rbscope.backtrace.first(3) }
    end
  end
end
using Ext
module Billing
  class Worker
    def self.build(n) = new.run(n)
    def run(n, *rest, key: 1, &blk)
      [1].map do
        [2].each { $queue.pop }
      end
    end
  end
end
o = Object.new
def o.solo(a) = Billing::Worker.build(a)
$queue = Queue.new
threads = 3.times.map { |i| Thread.new { o.solo(i) } }
# Explicit readiness: each thread is asleep inside Queue#pop.
Thread.pass until threads.all? { |t| t.status == "sleep" }

threads.each do |t|
  ours = Rbscope.backtrace(t)
  theirs = t.backtrace_locations
  same = ours.map { |f| [f.path, f.lineno, f.method_name] } ==
         theirs.map { |l| [l.path, l.lineno, l.base_label] }
  puts "agrees=#{same} frames=#{ours.size}"
end
Rbscope.backtrace(threads[0]).each do |f|
  puts [f.label, f.lineno, f.kind, f.block_depth, f.cfunc?, f.parameters.inspect].join(" | ")
end
"ab".shout(2).each { |f| puts [f.label, f.lineno, f.kind, f.refined_in].join(" | ") }
def nested(n) = n.zero? ? [Rbscope.backtrace, caller_locations(0)] : [1].each { return nested(n - 1) }
here, theirs = nested(3)
same = here.map { |f| [f.path, f.lineno, f.method_name] } == theirs.map { |l| [l.path, l.lineno, l.base_label] }
puts "current=#{same} #{here.size}"
puts "dead=#{Rbscope.backtrace(Thread.new {}.tap(&:join)).inspect}"
begin
  Rbscope.backtrace(:nope)
rescue TypeError => e
  puts "error=#{e.message}"
end
# Array#each and #map are written in Ruby when YJIT is on, from 3.4.
puts "ruby_each=#{![].method(:each).source_location.nil?}"
3.times { $queue << :go }
threads.each(&:join)
"#;

#[test]
fn any_threads_stack_with_the_facts_better_backtraces_need() {
    let sb = Sandbox::new();
    let app = sb.write("threads.rb", APP);
    let out = sb.ruby(&app).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..3],
        [
            "agrees=true frames=9",
            "agrees=true frames=9",
            "agrees=true frames=9"
        ],
        "{text}"
    );
    // Thread::Queue#pop is a C function in Ruby 3.1 and Ruby code from 3.2 on
    // (`<internal:thread_sync>`, where Ruby's own backtrace shows it too, at a line of that
    // file), with parameters.
    let pop_line;
    let pop = if ruby_at_least(3, 2) {
        let fields: Vec<&str> = lines[3].split(" | ").collect();
        pop_line = format!(
            "Thread::Queue#pop(non_block, timeout:) | {} | instance | 0 | false | [[:opt, :non_block], [:key, :timeout]]",
            fields.get(1).copied().unwrap_or("?")
        );
        pop_line.as_str()
    } else {
        "Thread::Queue#pop(*) | 15 | instance | 0 | true | [[:rest]]"
    };
    // A C function's frame is `cfunc?`; Array#each and #map written in Ruby are not.
    let cfunc = match lines.get(18).copied() {
        Some("ruby_each=true") => "false",
        Some("ruby_each=false") => "true",
        other => panic!("no ruby_each line: {other:?}\n{text}"),
    };
    let each = format!("Array#each() | 15 | instance | 0 | {cfunc} | []");
    let map = format!("Array#map() | 14 | instance | 0 | {cfunc} | []");
    assert_eq!(
        &lines[3..12],
        [
            pop,
            "Billing::Worker#run{block}{block}(n, *rest, key:, &blk) | 15 | instance | 2 | false | [[:req, :n], [:rest, :rest], [:key, :key], [:block, :blk]]",
            &each,
            "Billing::Worker#run{block}(n, *rest, key:, &blk) | 15 | instance | 1 | false | [[:req, :n], [:rest, :rest], [:key, :key], [:block, :blk]]",
            &map,
            "Billing::Worker#run(n, *rest, key:, &blk) | 14 | instance | 0 | false | [[:req, :n], [:rest, :rest], [:key, :key], [:block, :blk]]",
            "Billing::Worker.build(n) | 12 | class | 0 | false | [[:req, :n]]",
            "Object$singleton#solo(a) | 21 | singleton | 0 | false | [[:req, :a]]",
            "Object$singleton#<main>{block}{block}() | 23 | top | 2 | false | []",
        ],
        "{text}"
    );
    assert_eq!(
        &lines[12..15],
        [
            "String$refinement@Ext#shout{block}(times) | 5 | refinement | Ext",
            "Array#each() | 5 | instance | ",
            "String$refinement@Ext#shout(times) | 5 | refinement | Ext",
        ],
        "{text}"
    );
    assert_eq!(lines[15], "current=true 11", "{text}");
    assert_eq!(lines[16], "dead=[]", "{text}");
    assert_eq!(
        lines[17], "error=rbscope: Rbscope.backtrace(thread) expects a Thread, got :nope",
        "{text}"
    );
}
