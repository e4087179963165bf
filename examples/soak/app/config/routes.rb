# frozen_string_literal: true

Rails.application.routes.draw do
  get "/items" => "items#index"
  get "/items/:id" => "items#show"
  get "/checkout" => "checkout#create"
end
