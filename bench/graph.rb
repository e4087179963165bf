# frozen_string_literal: true

# The object graph the encode and restore benchmarks use: orders, each with a user struct, a
# roles array, three line hashes and their strings (about 12 objects per order).
User = Struct.new(:id, :email, :roles)

class Order
  def initialize(id, user, lines)
    @id = id
    @user = user
    @lines = lines
    @state = :open
  end
end

module BenchGraph
  OBJECTS_PER_ORDER = 12

  module_function

  def build(size)
    Array.new((size + OBJECTS_PER_ORDER - 1) / OBJECTS_PER_ORDER) do |i|
      user = User.new(i, "user#{i}@example.com", [:admin])
      lines = Array.new(3) { |k| { sku: "SKU-#{k}", qty: k, price: 1.5 * k } }
      Order.new(i, user, lines)
    end
  end

  # An exception raised in a frame whose local holds `graph`.
  def failure_with(graph)
    raise "bench"
  rescue => e
    e
  end
end
