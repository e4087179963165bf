# frozen_string_literal: true

module Rbscope
  # Rack middleware for any Rack app (Sinatra, Roda, plain Rack): a request that ends in an
  # unhandled exception stores a snapshot with the request's method, path, request id and user
  # agent. Frameworks that rescue the exception and render their own 500 (Sinatra outside
  # development) leave it in the env; that is reported too.
  #
  #   require "rbscope"
  #   Rbscope.start
  #   use Rbscope::Middleware
  class Middleware
    # Where frameworks leave an exception they rendered as an error page.
    RENDERED = %w[rack.exception sinatra.error action_dispatch.exception].freeze

    def initialize(app)
      @app = app
    end

    def call(env)
      response = @app.call(env)
      if response[0].to_i >= 500
        rendered = RENDERED.lazy.map { |key| env[key] }.find { |e| e.is_a?(Exception) }
        report(rendered, env) if rendered
      end
      response
    rescue Exception => e # rubocop:disable Lint/RescueException
      report(e, env) unless e.is_a?(SignalException) || e.is_a?(SystemExit)
      raise
    end

    # The request facts stored with a snapshot.
    def self.request_context(env)
      {
        request_method: env["REQUEST_METHOD"],
        path: env["PATH_INFO"],
        request_id: env["action_dispatch.request_id"] || env["HTTP_X_REQUEST_ID"],
        user_agent: env["HTTP_USER_AGENT"],
      }.compact
    end

    private

    def report(exception, env)
      return if env["rbscope.reported"]

      env["rbscope.reported"] = true
      Rbscope.report(exception, how: "request failed", **self.class.request_context(env))
    end
  end
end
