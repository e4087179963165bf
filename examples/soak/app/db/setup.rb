# frozen_string_literal: true

# Creates and seeds the app's SQLite database (run once, before puma starts its workers).
require_relative "../config/environment"

ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table(:items, force: true) do |t|
    t.string :name, null: false
    t.integer :price_cents, null: false
    t.string :tags
    t.text :description
  end
end
rows = (1..2000).map do |i|
  { name: "item #{i}", price_cents: 100 + (i * 37) % 9900, tags: %w[red green blue small large].rotate(i).first(2).join(","),
    description: "Item number #{i}. " * 8 }
end
Item.insert_all(rows)
puts Item.count
