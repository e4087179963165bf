# frozen_string_literal: true

# RBSCOPE_DISABLE=1: the same public API, doing nothing.
module Rbscope
  class << self
    def start(**) = false
    def stop = nil
    def started? = false
    def report(_exception, **) = nil
    def counters = {}
    def store_location = nil
    def flush(_seconds = 5) = true

    def heap_dump(*, **)
      raise NotImplementedError, "rbscope is disabled (RBSCOPE_DISABLE=1): Rbscope.heap_dump needs the native agent"
    end

    def count_objects(*)
      raise NotImplementedError, "rbscope is disabled (RBSCOPE_DISABLE=1): Rbscope.count_objects needs the native agent"
    end

    def backtrace(_thread = Thread.current)
      raise NotImplementedError, "rbscope is disabled (RBSCOPE_DISABLE=1): Rbscope.backtrace needs the native agent"
    end
  end

  # With RBSCOPE_DISABLE=1 the middleware passes requests through untouched.
  class Middleware
    def initialize(app) = @app = app
    def call(env) = @app.call(env)
  end
end
