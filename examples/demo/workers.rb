# A small job runner with a few threads, for `rbscope stacks -p PID`: two workers wait
# for jobs on a queue, one is stuck in a slow "payment gateway" call, and the main thread waits.
module Shop
  class Worker
    def initialize(queue) = @queue = queue

    def run(name:)
      loop do
        job = @queue.pop
        job.call
      end
    end
  end

  class Gateway
    def self.charge(order_id, amount, currency: "EUR")
      sleep # the gateway never answers
    end
  end
end

queue = Queue.new
workers = 2.times.map do |i|
  Thread.new { Shop::Worker.new(queue).run(name: "w#{i}") }.tap { |t| t.name = "worker-#{i}" }
end
stuck = Thread.new { Shop::Gateway.charge(42, 19.99) }
stuck.name = "checkout"
Thread.pass until [*workers, stuck].all? { |t| t.status == "sleep" }
$stdout.puts "ready #{Process.pid}"
$stdout.flush
stuck.join
