# frozen_string_literal: true

# A program for the trace tests: it starts the agent, says "ready PID", then runs commands
# read from stdin, one per line, answering "done COMMAND [RESULT]" after each.
require "rbscope"
Rbscope.start

module Helpers
  def fmt(x) = "<#{x}>"
end

class Job
  include Helpers

  def initialize(tag) = @tag = tag
  def outer(seconds) = inner(seconds)
  def inner(seconds) = sleep(seconds)
end

class Greeter
  include Helpers

  attr_reader :name

  def self.build(name) = new(name)
  def initialize(name) = @name = name

  def greet(times, punct: "!")
    times.times.map { |i| fmt(shout(@name)) + punct * i }
  end

  def shout(text) = text.upcase
end

class Slow
  def run = [quick, nap]
  def quick = 1
  def nap = sleep(0.12)
end

class Hot
  def hot(x) = x
end

# The agent measures the TSC's rate in its first 20 ms; traces started after that use it.
sleep 0.001 until Rbscope::Native.trace_clock_settled?
$stdout.sync = true
puts "ready #{Process.pid}"
while (line = $stdin.gets)
  cmd, arg = line.split
  case cmd
  when "jobs"
    a = Thread.new { Thread.current.name = "worker-a"; 3.times { Job.new(:a).outer(0.05) } }
    b = Thread.new { Thread.current.name = "worker-b"; 3.times { Job.new(:b).outer(0.07) } }
    [a, b].each(&:join)
    puts "done jobs"
  when "greet"
    g = Greeter.build("bob")
    g.greet(2)
    g.name
    Process.pid
    puts "done greet"
  when "slow"
    Slow.new.run
    puts "done slow"
  when "gc"
    GC.start
    puts "done gc"
  when "hot"
    h = Hot.new
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    i = 0
    n = Integer(arg)
    while i < n
      h.hot(i)
      i += 1
    end
    puts format("done hot %.6f", Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0)
  when "hoard"
    $hoard = Array.new(Integer(arg)) { |i| "hoarded string #{i}" }
    puts "done hoard"
  when "threads"
    Integer(arg).times.each_slice(100) { |batch| batch.map { Thread.new { Hot.new.hot(1) } }.each(&:join) }
    puts "done threads"
  when "sleep"
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    sleep Float(arg)
    puts format("done sleep %.6f", Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0)
  end
end
