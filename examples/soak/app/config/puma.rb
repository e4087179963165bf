# frozen_string_literal: true

# Cluster mode; scripts/soak sets the port, the worker count and whether the app is preloaded
# in the master (the agent then starts there and each forked worker builds its own).
environment "production"
bind "tcp://127.0.0.1:#{ENV.fetch('SOAK_PORT')}"
workers Integer(ENV.fetch("SOAK_WORKERS", "2"))
threads 8, 8
preload_app! if ENV["SOAK_PRELOAD"] == "1"
worker_timeout 60
