# frozen_string_literal: true

# GET /checkout?id=ID fails on purpose: the soak's share of requests that must each store a
# snapshot. The id is in the message so the soak can find every snapshot in the store.
class CheckoutController < ActionController::Base
  class PaymentDeclined < StandardError; end

  def create
    soak_id = params[:id].to_s
    @cart = Item.order(:id).limit(3).to_a
    total_cents = @cart.sum(&:price_cents)
    card = { number: "4111111111111111", password: "hunter2", holder: "Soak Tester" }
    charge(soak_id, total_cents, card)
  end

  private

  def charge(soak_id, total_cents, card)
    attempts = 1
    raise PaymentDeclined, "soak failure #{soak_id}: card declined for #{total_cents} cents " \
                           "after #{attempts} attempt(s) (#{card[:holder]})"
  end
end
