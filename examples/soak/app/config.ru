# frozen_string_literal: true

require_relative "config/environment"

# Which process answered (the soak ties a lost snapshot to a worker that died).
class SoakWorkerPid
  def initialize(app) = @app = app

  def call(env)
    status, headers, body = @app.call(env)
    headers["X-Soak-Pid"] = Process.pid.to_s
    [status, headers, body]
  end
end

use SoakWorkerPid
run Rails.application
