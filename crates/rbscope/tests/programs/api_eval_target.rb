# frozen_string_literal: true

# A program for tests/ruby_api.rs: it allows `rbscope eval`, says "ready PID", then answers
# "done alive yes" to each "alive" line read from stdin.
require "rbscope"
Rbscope.start(allow_eval: true, log: false)
puts "ready #{Process.pid}"
$stdout.flush
$stdin.each_line do |line|
  puts "done #{line.strip} yes"
  $stdout.flush
end
