# frozen_string_literal: true

# The demo app: a tiny shop whose checkout fails deep inside a call chain. The locals and
# objects along the way are what an engineer would want to see afterwards.
require "bigdecimal"
require "date"
require "set"

module Shop
  Item = Struct.new(:sku, :name, :price_cents)

  class Customer
    attr_reader :email

    def initialize(email, password, card_number)
      @email = email
      @password = password          # redacted in snapshots (secret name)
      @card_number = card_number    # redacted (looks like a card number)
      @joined_on = Date.new(2023, 5, 17)
    end
  end

  class Cart
    attr_reader :customer, :lines

    def initialize(customer)
      @customer = customer
      @lines = []
      @coupons = Set.new
      @created_at = Time.at(1_700_000_000).utc
      @cart = self # a cycle: the cart refers to itself
    end

    def add(item, quantity)
      @lines << { item: item, quantity: quantity }
      self
    end

    def apply(code)
      @coupons << code
      self
    end
  end

  class Pricing
    TAX = BigDecimal("0.2")

    def total(cart)
      subtotal = cart.lines.sum { |line| line_total(line) }
      discount = cart.lines.size > 2 ? subtotal / 10 : 0
      tax = (subtotal - discount) * TAX
      subtotal - discount + tax
    end

    def line_total(line)
      weights = { "SKU-1" => 1.0, "SKU-2" => 0.5 }
      line[:item].price_cents * line[:quantity] * weights.fetch(line[:item].sku)
    end
  end

  class Checkout
    def initialize(pricing)
      @pricing = pricing
      @attempts = 0
    end

    def run(cart)
      @attempts += 1
      amount = @pricing.total(cart)
      charge(cart.customer, amount)
    rescue KeyError => e
      raise CheckoutError, "cannot price cart for #{cart.customer.email}: #{e.message}"
    end

    def charge(_customer, amount)
      amount
    end
  end

  class CheckoutError < StandardError; end
end

customer = Shop::Customer.new("ann@example.com", "hunter2", "4111 1111 1111 1111")
cart = Shop::Cart.new(customer)
cart.add(Shop::Item.new("SKU-1", "Teapot", 2500), 1)
    .add(Shop::Item.new("SKU-2", "Cups", 800), 4)
    .add(Shop::Item.new("SKU-9", "Saucer", 300), 2)
    .apply("WELCOME10")
Shop::Checkout.new(Shop::Pricing.new).run(cart)
