# frozen_string_literal: true

# The soak app: a small Rails 6.1 app (Debian's ruby-rails) on SQLite, served by puma in
# cluster mode, with the rbscope Railtie. scripts/soak runs it under load; see
# examples/soak/README.md.
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "rbscope/rails"

class SoakApp < Rails::Application
  config.load_defaults 6.1
  config.root = File.expand_path("..", __dir__)
  config.eager_load = true
  config.cache_classes = true
  config.consider_all_requests_local = false
  config.logger = Logger.new(nil)
  config.log_level = :warn
  config.secret_key_base = "s" * 64
  config.hosts.clear
  config.filter_parameters += [:password]
  # Every failing request stores a snapshot (the default keeps 10 per fingerprint a minute):
  # the soak counts each one.
  config.rbscope.rate_limit = 0
  # `rbscope eval -p PID` is part of the soak's client loop.
  config.rbscope.allow_eval = true
end
