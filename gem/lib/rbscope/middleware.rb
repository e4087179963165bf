# frozen_string_literal: true

module Rbscope
  # Rack middleware for any Rack app (Sinatra, Roda, plain Rack): a request that ends in an
  # unhandled exception stores a snapshot with the request's method, path, request id and user
  # agent. Frameworks that rescue the exception and render their own 500 (Sinatra outside
  # development) leave it in the env; that is reported too. With `slow_snapshot` set, a request
  # still running after that many seconds gets one live snapshot of its thread (slow.rb).
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
      watch = Slow.watch("request", env)
      response = @app.call(env)
      report_rendered(response, env)
      response
    rescue Exception => e # rubocop:disable Lint/RescueException
      report(e, env) unless e.is_a?(SignalException) || e.is_a?(SystemExit)
      raise
    ensure
      Slow.done(watch)
    end

    # The request facts stored with a snapshot (nothing when `env` is not a Hash).
    def self.request_context(env)
      return {} unless Hash === env

      {
        request_method: env["REQUEST_METHOD"],
        path: env["PATH_INFO"],
        request_id: env["action_dispatch.request_id"] || env["HTTP_X_REQUEST_ID"],
        user_agent: env["HTTP_USER_AGENT"],
      }.compact
    end

    # Whether this request's exception is still to be reported (the Rails and the Rack
    # middleware may both see it): marks `env`, or, when `env` is frozen or not a Hash, this
    # fiber (by the identities of the env and the exception, without keeping them alive).
    def self.first_report?(env, exception)
      if Hash === env && !env.frozen?
        return false if env["rbscope.reported"]

        env["rbscope.reported"] = true
      else
        key = [env.__id__, exception.__id__]
        return false if Thread.current[:__rbscope_reported] == key

        Thread.current[:__rbscope_reported] = key
      end
      true
    end

    # Reports `exception` for the request, once. Never raises into the app: whatever goes wrong
    # here (an odd env, a failing report) leaves the app's own response or exception as it was.
    def self.report_request(exception, env)
      return unless first_report?(env, exception)

      Rbscope.report(exception, how: "request failed", **request_context(env))
    rescue StandardError
      nil
    end

    private

    def report_rendered(response, env)
      status = Array === response ? response[0] : nil
      status = Integer(status, exception: false) if String === status
      return unless Integer === status && status >= 500 && Hash === env

      rendered = RENDERED.lazy.map { |key| env[key] }.find { |e| e.is_a?(Exception) }
      report(rendered, env) if rendered
    rescue StandardError
      nil
    end

    def report(exception, env)
      Middleware.report_request(exception, env)
    end
  end
end
