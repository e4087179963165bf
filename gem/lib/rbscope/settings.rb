# frozen_string_literal: true

module Rbscope
  # Turns Rbscope.start options and RBSCOPE_* environment variables into the agent's settings.
  module Settings
    # option => environment variable
    KEYS = {
      store: "RBSCOPE_STORE",
      store_key: "RBSCOPE_STORE_KEY",
      app_root: "RBSCOPE_APP_ROOT",
      app_revision: "RBSCOPE_REVISION",
      report_all_raises: "RBSCOPE_REPORT_ALL_RAISES",
      capture_library_frames: "RBSCOPE_CAPTURE_LIBRARY_FRAMES",
      max_frames: "RBSCOPE_MAX_FRAMES",
      max_depth: "RBSCOPE_MAX_DEPTH",
      max_objects: "RBSCOPE_MAX_OBJECTS",
      max_bytes: "RBSCOPE_MAX_BYTES",
      max_string_bytes: "RBSCOPE_MAX_STRING_BYTES",
      max_collection_items: "RBSCOPE_MAX_COLLECTION_ITEMS",
      source_context_lines: "RBSCOPE_SOURCE_CONTEXT_LINES",
      rate_limit: "RBSCOPE_RATE_LIMIT",
      max_store_bytes: "RBSCOPE_MAX_STORE_BYTES",
      store_backlog: "RBSCOPE_STORE_BACKLOG",
      magic_roots: "RBSCOPE_MAGIC_ROOTS",
      redact: "RBSCOPE_REDACT",
      redact_names: "RBSCOPE_REDACT_NAMES",
      log: "RBSCOPE_LOG",
      control_socket: "RBSCOPE_CONTROL_SOCKET",
      allow_eval: "RBSCOPE_ALLOW_EVAL",
      trace_buffer: "RBSCOPE_TRACE_BUFFER",
      pending_captures: "RBSCOPE_PENDING_CAPTURES",
      capture: "RBSCOPE_CAPTURE",
      retention_days: "RBSCOPE_RETENTION_DAYS",
      retention_count: "RBSCOPE_RETENTION_COUNT",
      retention_bytes: "RBSCOPE_RETENTION_BYTES",
    }.freeze

    module_function

    def pairs(options)
      unknown = options.keys.map(&:to_sym) - KEYS.keys
      raise ArgumentError, "rbscope: unknown option(s) #{unknown.join(', ')}" unless unknown.empty?

      values = {}
      KEYS.each do |key, env|
        value = options.key?(key) ? options[key] : ENV[env]
        values[key] = value unless value.nil?
      end
      values[:app_root] ||= Dir.pwd
      values[:app_revision] ||= revision(values[:app_root])
      values[:library_prefixes] = library_prefixes
      values.map { |k, v| [k.to_s, v.is_a?(Array) ? v.join("\n") : v.to_s] }
    end

    # Where library code lives: frames there are not app frames.
    def library_prefixes
      dirs = RbConfig::CONFIG.values_at("rubylibdir", "rubyarchdir", "vendordir", "vendorlibdir",
                                        "sitedir", "sitelibdir")
      dirs << File.expand_path("..", __dir__) # rbscope itself
      dirs.concat(Gem.path) if defined?(Gem)
      dirs << Bundler.bundle_path.to_s if defined?(Bundler) && Bundler.respond_to?(:bundle_path)
      dirs.compact.reject(&:empty?).map { |d| d.end_with?("/") ? d : "#{d}/" }.uniq
    rescue StandardError
      []
    end

    # The app's revision: an environment variable deploy tools set, a REVISION file
    # (Capistrano), or the git HEAD, read from files (no git process is started).
    def revision(root)
      %w[REVISION GIT_COMMIT GIT_SHA SOURCE_VERSION HEROKU_SLUG_COMMIT].each do |var|
        return ENV[var] unless ENV[var].to_s.empty?
      end
      file = File.join(root, "REVISION")
      return File.read(file, 100).strip if File.file?(file)

      git_head(File.join(root, ".git"))
    rescue StandardError
      nil
    end

    def git_head(git)
      head = File.join(git, "HEAD")
      return nil unless File.file?(head)

      ref = File.read(head, 200).strip
      return ref unless ref.start_with?("ref: ")

      name = ref.delete_prefix("ref: ")
      loose = File.join(git, name)
      return File.read(loose, 100).strip if File.file?(loose)

      packed = File.join(git, "packed-refs")
      return nil unless File.file?(packed)

      File.foreach(packed) do |line|
        sha, refname = line.split(" ", 2)
        return sha if refname&.strip == name
      end
      nil
    end
  end
end
