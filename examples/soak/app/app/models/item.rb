# frozen_string_literal: true

class Item < ActiveRecord::Base
  PER_PAGE = 20

  # One page of items with their prices summed: what GET /items serves (and what the soak's
  # trace selector `Item.page_of(page)` captures).
  def self.page_of(page)
    items = order(:id).offset((page % pages) * PER_PAGE).limit(PER_PAGE).to_a
    { page: page, total_cents: items.sum(&:price_cents), items: items.map(&:summary) }
  end

  def self.pages
    @pages ||= [count / PER_PAGE, 1].max
  end

  def summary
    { id: id, name: name, price: format("%.2f", price_cents / 100.0), tags: tags.to_s.split(",") }
  end
end
