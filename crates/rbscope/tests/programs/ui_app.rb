# A small shop for the web UI tests: it reports snapshots an error tracker would group (three
# declined payments from one place, an ArgumentError caused by a KeyError), with locals that
# make the value tree interesting (a cycle order -> customer -> orders -> order, a secret, Rails
# style params, a deep hash that gets cut), class-level state (Shop::Checkout's @gateway and
# @@charges), and does traced work on two threads. Run it under
# `rbscope run` (which loads and starts the agent).

module Shop
  class PaymentError < StandardError; end

  class Customer
    attr_reader :name, :orders

    def initialize(name)
      @name = name
      @orders = []
    end
  end

  class Order
    attr_reader :customer, :lines

    def initialize(customer)
      @customer = customer
      @lines = []
      customer.orders << self
    end
  end

  class Pricing
    def total(order) = order.lines.sum { |l| l[:price] * l[:qty] }
  end

  class Checkout
    # Class-level state, shown in the snapshot's class-level state section.
    @gateway = "sandbox"
    @@charges = 0

    def charge(order, card_token:)
      @@charges += 1
      password = "hunter2-secret"
      note = %(<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>)
      params = { "user" => { "email" => "ann@example.com", "password" => "pw-123" } }
      amount = Pricing.new.total(order)
      raise PaymentError, "card declined for #{order.customer.name}: amount #{amount}"
    end

    def run(order)
      charge(order, card_token: "tok_live_4242")
    rescue PaymentError => e
      Rbscope.report(e)
    end
  end
end

def nested(level) = level.zero? ? { leaf: "bottom" } : { level: level, inner: nested(level - 1) }

def load_config(settings)
  deep = nested(30)
  settings.fetch(:region)
end

def boot(settings)
  load_config(settings)
rescue KeyError
  raise ArgumentError, "config is incomplete"
end

ann = Shop::Customer.new("ann")
order = Shop::Order.new(ann)
order.lines << { sku: "SKU-1", price: 12, qty: 2 } << { sku: "SKU-2", price: 5, qty: 1 }
3.times { Shop::Checkout.new.run(order) }

begin
  boot({ name: "shop" })
rescue ArgumentError => e
  Rbscope.report(e)
end

worker = Thread.new do
  Thread.current.name = "pricing-worker"
  200.times { Shop::Pricing.new.total(order) }
end
200.times { Shop::Pricing.new.total(order) }
worker.join
Rbscope.flush
puts "done"
