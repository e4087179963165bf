# What threads do, as JSON on the last line (tests/capture_events.rs). With STARTED=1, rbscope
# is started first, so every thread block below is wrapped by it; the "behaviour" part must be
# the same either way.
require "json"
if ENV["STARTED"]
  require "rbscope"
  Rbscope.start
end
Thread.report_on_exception = false

class Job < Thread
  def initialize(n, &block)
    super(n * 2, &block)
  end
end

def ended(thread)
  { "value" => thread.value.inspect }
rescue Exception => e # rubocop:disable Lint/RescueException
  { "class" => e.class.name, "message" => e.message, "backtrace" => e.backtrace }
end

def failing(what)
  raise IOError, "failed on #{what}"
end

behaviour = {}
behaviour["arguments"] = ended(Thread.new(1, 2, k: 3) { |a, b, k:| [a, b, k] })
behaviour["hash"] = ended(Thread.new({ a: 1 }) { |h| h })
behaviour["splat"] = ended(Thread.new([1, 2]) { |a, b| [a, b] })
behaviour["subclass"] = ended(Job.new(4) { |x| x + 1 })
behaviour["start"] = ended(Thread.start(5) { |x| x })
behaviour["fork"] = ended(Thread.fork { :forked })
behaviour["raise"] = ended(Thread.new { failing("job-7") })
behaviour["throw"] = ended(Thread.new { throw :nowhere })
behaviour["break"] = ended(Thread.new { break 5 })
behaviour["exit"] = ended(Thread.new { Thread.exit; 1 })
behaviour["system_exit"] = ended(Thread.new { exit 3 })
behaviour["caller"] = ended(Thread.new { caller_locations.map(&:to_s) })
sleeper = Thread.new { sleep }
Thread.pass until sleeper.status == "sleep"
sleeper.kill
behaviour["kill"] = ended(sleeper).merge("status" => sleeper.status.inspect)

result = { "behaviour" => behaviour }
if ENV["STARTED"]
  queue = Queue.new
  parked = [
    Thread.new { queue.pop },
    Job.new(1) { queue.pop },
    Thread.start { queue.pop },
    Thread.fork { queue.pop }
  ]
  parked.each_with_index { |t, i| t.name = "parked-#{i}" }
  Thread.pass until parked.all? { |t| t.status == "sleep" }
  raised = Thread.new { failing("better") rescue $! }.value
  result["better"] = raised.better_backtrace&.map(&:to_s)
  result["outside"] = {}
  parked.each do |t|
    result["outside"]["#{t.name} backtrace"] = t.backtrace
    result["outside"]["#{t.name} Rbscope.backtrace"] = Rbscope.backtrace(t)
  end
  result["stacks"] = IO.popen([ENV.fetch("RBSCOPE_CLI"), "stacks", "-p", Process.pid.to_s, "--json"], &:read)
  parked.size.times { queue << :go }
  parked.each(&:join)
  Rbscope.flush
end
puts JSON.generate(result)
