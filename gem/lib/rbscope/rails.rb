# frozen_string_literal: true

require "rbscope"

module Rbscope
  # Rails integration: with `gem "rbscope"` in the Gemfile (and `require "rbscope/rails"` when
  # Bundler does not require it), rbscope starts with the app, stores a snapshot for every
  # request that ends in an unhandled exception Rails answers with a 5xx (not the 4xx ones in
  # `rescue_responses`, such as RecordNotFound), and for every failing ActiveJob perform; with
  # `config.rbscope.slow_snapshot = 10.seconds`, one live snapshot of a request or job still
  # running after 10 seconds (slow.rb).
  # Rails' `filter_parameters` and ActiveRecord's `filter_attributes` names are redacted too.
  #
  # Rails' per-process singletons (the application, its config and routes, the logger, the
  # cache, ActiveRecord's connection handler...) are magic roots: snapshots refer to them by
  # name, and a restore in a process that loaded the app gets that process's own back.
  #
  # Settings: `config.rbscope.<option> = ...` for any Rbscope.start option;
  # `config.rbscope.report_4xx = true` stores 4xx exceptions as well;
  # `config.rbscope.better_backtraces = true` logs request errors with better backtraces.
  class Railtie < ::Rails::Railtie
    config.rbscope = ActiveSupport::OrderedOptions.new

    initializer "rbscope.middleware" do |app|
      app.middleware.insert_after ActionDispatch::DebugExceptions, Rbscope::RailsMiddleware
    end

    config.after_initialize do |app|
      Railtie.register_magic_roots(app)
      options = app.config.rbscope.to_h.except(:report_4xx, :better_backtraces)
      names = Array(options.delete(:redact_names))
      filters = Array(app.config.filter_parameters)
      filters += Array(ActiveRecord::Base.filter_attributes) if defined?(ActiveRecord::Base)
      names += filters.grep(Symbol).map(&:to_s) + filters.grep(String)
      options[:redact_names] = names.uniq unless names.empty?
      options[:app_root] ||= Rails.root.to_s
      configured = Railtie.start(options)
      Railtie.better_backtraces if configured && app.config.rbscope.better_backtraces
    end

    # Starts rbscope with the `config.rbscope` options. A bad option (a String for a number, an
    # unknown name) does not stop the app from booting: rbscope stays off and says why in one
    # line on stderr (Rbscope.start itself raises, naming the option).
    def self.start(options)
      Rbscope.start(**options) unless Rbscope.started?
      true
    rescue ArgumentError, TypeError => e
      warn "[rbscope] not started: config.rbscope: #{e.message}"
      false
    end

    # `config.rbscope.better_backtraces = true`: the error Rails logs for a failed request
    # lists the better frames (through Rails' backtrace cleaner, as its own trace is), and
    # uncaught exceptions print in the better format (Rbscope::BetterBacktraces.install).
    def self.better_backtraces
      Rbscope::BetterBacktraces.install
      ActionDispatch::DebugExceptions.prepend(BetterErrorLog)
    end

    module BetterErrorLog
      private

      def log_error(request, wrapper)
        exception = wrapper.exception
        frames = exception.better_backtrace
        return super unless frames

        logger = logger(request)
        return unless logger

        lines = frames.map(&:to_s)
        cleaned = Rails.backtrace_cleaner.clean(lines)
        message = ["  ", "#{exception.class} (#{exception.message}):"]
        message.concat(exception.annotated_source_code) if exception.respond_to?(:annotated_source_code)
        message << "  "
        message.concat(cleaned.empty? ? lines : cleaned)
        log_array(logger, message)
      end
    end

    def self.register_magic_roots(app)
      roots = {
        "Rails.application" => app,
        "Rails.application.config" => app.config,
        "Rails.application.routes" => app.routes,
        "Rails.application.executor" => app.executor,
        "Rails.application.reloader" => app.reloader,
        "Rails.logger" => Rails.logger,
        "Rails.cache" => Rails.cache,
        "ActiveSupport::Notifications.notifier" => ActiveSupport::Notifications.notifier,
      }
      roots["ActiveRecord::Base.connection_handler"] = ActiveRecord::Base.connection_handler if defined?(ActiveRecord::Base)
      roots.each { |name, object| Rbscope.magic_root(name, object) unless object.nil? }
    end

    # An ActiveJob's facts, stored with its snapshots.
    def self.job_facts(job)
      { job_class: job.class.name, job_id: job.job_id, queue: job.queue_name, attempt: job.executions }
    rescue StandardError
      {}
    end

    initializer "rbscope.active_job" do
      ActiveSupport.on_load(:active_job) do
        around_perform do |job, block|
          watch = Rbscope::Slow.watch("job", Railtie.job_facts(job)) if Rbscope::Slow.budget
          block.call
        rescue Exception => e # rubocop:disable Lint/RescueException
          Rbscope.report(e, how: "job failed", **Railtie.job_facts(job))
          raise
        ensure
          Rbscope::Slow.done(watch)
        end
      end
    end
  end

  # Between DebugExceptions and the app: sees the exception itself, before Rails renders it.
  class RailsMiddleware
    def initialize(app)
      @app = app
    end

    def call(env)
      watch = Rbscope::Slow.watch("request", env)
      @app.call(env)
    rescue Exception => e # rubocop:disable Lint/RescueException
      report(e, env) if reportable?(e)
      raise
    ensure
      Rbscope::Slow.done(watch)
    end

    private

    def reportable?(exception)
      return true if Rails.application.config.rbscope.report_4xx

      ActionDispatch::ExceptionWrapper.status_code_for_exception(exception.class.name) >= 500
    end

    def report(exception, env)
      Rbscope::Middleware.report_request(exception, env)
    end
  end
end
