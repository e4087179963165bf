# frozen_string_literal: true

# RBSCOPE_DISABLE=1: the same public API, doing nothing. Arguments are checked as when rbscope
# is on (public_args.rb), so a wrong call fails the same way in both.
module Rbscope
  class << self
    def start(**options)
      PublicArgs.start(options)
      false
    end

    def stop = nil
    def started? = false

    def report(exception, how: "Rbscope.report", **context)
      PublicArgs.report(exception, how, context)
      nil
    end

    def snapshot(thread = Thread.current, how: "Rbscope.snapshot", **context)
      PublicArgs.snapshot(thread, how, context)
      nil
    end

    def counters = {}
    def store_location = nil

    def flush(seconds = 5)
      PublicArgs.seconds(seconds)
      true
    end

    def heap_dump(path = nil, gzip: false, gc: false, in_process: false)
      PublicArgs.heap_dump(path, gzip, gc, in_process)
      raise NotImplementedError, "rbscope is disabled (RBSCOPE_DISABLE=1): Rbscope.heap_dump needs the native agent"
    end

    def count_objects(names = [])
      PublicArgs.class_names(names)
      raise NotImplementedError, "rbscope is disabled (RBSCOPE_DISABLE=1): Rbscope.count_objects needs the native agent"
    end

    def backtrace(thread = Thread.current)
      PublicArgs.thread(thread)
      raise NotImplementedError, "rbscope is disabled (RBSCOPE_DISABLE=1): Rbscope.backtrace needs the native agent"
    end
  end

  # With RBSCOPE_DISABLE=1 the middleware passes requests through untouched.
  class Middleware
    def initialize(app) = @app = app
    def call(env) = @app.call(env)
  end
end
