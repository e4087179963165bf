# frozen_string_literal: true

class ItemsController < ActionController::Base
  def index
    page = params[:page].to_i
    render json: Item.page_of(page)
  end

  def show
    item = Item.find(params[:id])
    render json: item.summary.merge(description: item.description)
  end
end
