# A small job runner with a few threads, for `rbscope stacks -p PID` and `rbscope trace -p PID`:
# two workers take jobs from a queue (a scheduler adds one every 100 ms once the runner is
# ready), one thread is stuck in a slow "payment gateway" call, and the main thread waits.
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

  class Order
    def initialize(id, items)
      @id = id
      @items = items
    end

    def total = @items.sum { |item| price(item) }
    def price(item) = item.size * 1.5
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
scheduler = Thread.new do
  id = 0
  loop do
    id += 1
    queue << -> { Shop::Order.new(id, %w[book pen lamp]).total }
    sleep 0.1
  end
end
scheduler.name = "scheduler"
stuck.join
