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
      slow_snapshot: "RBSCOPE_SLOW_SNAPSHOT",
    }.freeze

    # What each option takes. Integers: the allowed range (the agent's config.rs checks the
    # same ranges). An environment variable with a value outside these rules is ignored, with
    # one line on stderr, so that a bad variable never stops the app from booting; an option
    # outside them raises (TypeError for the wrong kind of object, ArgumentError otherwise).
    INTEGERS = {
      max_frames: 1..10_000,
      max_depth: 0..1_000,
      max_objects: 0..10_000_000,
      max_bytes: 0..(4 << 30),
      max_string_bytes: 0..(1 << 30),
      max_collection_items: 0..10_000_000,
      source_context_lines: 0..1_000,
      rate_limit: 0..1_000_000,
      max_store_bytes: 0..(1 << 50),
      store_backlog: 0..1_000_000,
      trace_buffer: (64 << 10)..(1 << 30),
      pending_captures: 1..4_096,
      retention_days: 0..100_000,
      retention_count: 0..(1 << 50),
      retention_bytes: 0..(1 << 50),
    }.freeze
    FLAGS = %i[report_all_raises capture_library_frames redact log control_socket allow_eval].freeze
    PATHS = %i[store store_key app_root].freeze
    TEXTS = %i[app_revision].freeze
    LISTS = %i[magic_roots redact_names].freeze
    CHOICES = { capture: %w[auto inspector] }.freeze
    # Budgets in seconds (slow.rb): more than 0, at most this (config.rs checks the same).
    SECONDS = { slow_snapshot: 1_000_000 }.freeze
    # Items of a list option, and bytes of a String one.
    MAX_ITEMS = 10_000
    MAX_TEXT = 4096
    FLAG_WORDS = { "1" => true, "true" => true, "yes" => true, "on" => true,
                   "0" => false, "false" => false, "no" => false, "off" => false, "" => false }.freeze

    @ignored = {}

    module_function

    def pairs(options)
      options = option_names(options)
      values = {}
      KEYS.each do |key, env|
        value = if options.key?(key)
                  option(key, options[key])
                else
                  environment(key, env)
                end
        values[key] = value unless value.nil?
      end
      values[:app_root] ||= Dir.pwd
      values[:app_revision] ||= revision(values[:app_root])
      values[:library_prefixes] = library_prefixes
      values.map { |k, v| [k.to_s, utf8(v.is_a?(Array) ? v.join("\n") : v.to_s)] }
    end

    # `text` as UTF-8, which is what the agent reads: a path or revision in another encoding
    # (the C locale's US-ASCII, binary) is taken by its bytes when they are UTF-8, and with
    # replacement characters otherwise.
    def utf8(text)
      return text if text.encoding == Encoding::UTF_8 && text.valid_encoding?

      bytes = text.b.force_encoding(Encoding::UTF_8)
      bytes.valid_encoding? ? bytes : bytes.scrub
    end

    # The options with Symbol names (String names are taken too); unknown names raise.
    def option_names(options)
      named = {}
      unknown = []
      options.each do |name, value|
        key = case name
              when Symbol then name
              when String then name.valid_encoding? ? name.to_sym : nil
              end
        if key.nil? || !KEYS.key?(key)
          unknown << Args.shown(name)
        elsif named.key?(key)
          raise ArgumentError, "rbscope: Rbscope.start got option #{key} twice (as a String and a Symbol)"
        else
          named[key] = value
        end
      end
      unless unknown.empty?
        raise ArgumentError, "rbscope: unknown option(s) #{unknown.join(', ')} " \
                             "(Rbscope.start takes #{KEYS.keys.join(', ')})"
      end
      named
    end

    # An option's value as the agent takes it (nil: not set). Raises when it does not fit.
    def option(key, value)
      return nil if NilClass === value

      what = "Rbscope.start(#{key}:)"
      if (max = SECONDS[key])
        seconds(what, value, max)
      elsif (range = INTEGERS[key])
        Args.integer(what, value, range)
      elsif FLAGS.include?(key)
        Args.flag(what, value)
      elsif PATHS.include?(key)
        expected = key == :store ? "a path (a String or a Pathname) or a postgres:// URL" : "a path (a String or a Pathname)"
        Args.path(what, value, expected: expected)
      elsif TEXTS.include?(key)
        Args.text(what, value, max: MAX_TEXT)
      elsif LISTS.include?(key)
        list(what, value)
      else
        choices = CHOICES.fetch(key)
        expected = choices.map { |c| ":#{c}" }.join(" or ")
        choice = Args.text(what, value, expected: expected, symbol: true)
        raise Args.arg_error(what, expected, value) unless choices.include?(choice)

        choice
      end
    end

    # A budget in seconds: a positive Integer, Float or Rational (or an ActiveSupport::Duration,
    # `10.seconds`) of at most `max`, as a Float; false turns it off (nil).
    def seconds(what, value, max)
      return nil if FalseClass === value

      expected = "a number of seconds above 0 and at most #{max} (or false: off)"
      value = value.to_f if duration?(value)
      raise Args.type_error(what, expected, value) unless (Integer === value || Float === value || Rational === value)

      seconds = value.to_f
      raise Args.arg_error(what, expected, value) unless seconds.finite? && seconds.positive? && seconds <= max

      seconds
    end

    # Whether `value` is an ActiveSupport::Duration (asked without calling its methods: it
    # answers is_a?(Numeric) with true, but is no Numeric).
    def duration?(value)
      defined?(ActiveSupport::Duration) && ActiveSupport::Duration === value
    end

    # A list option: an Array of Strings or Symbols, or one String (comma separated) or Symbol.
    def list(what, value)
      expected = "an Array of Strings or Symbols (at most #{MAX_ITEMS})"
      return [Args.text(what, value, expected: expected, symbol: true, max: MAX_TEXT)] unless Array === value
      raise ArgumentError, "rbscope: #{what} expects #{expected}, got #{value.size} items" if value.size > MAX_ITEMS

      value.map { |item| Args.text(what, item, expected: expected, symbol: true, max: MAX_TEXT) }
    end

    # The variable's value as the agent takes it (nil: not set, or ignored with one line on
    # stderr saying why).
    def environment(key, env)
      raw = ENV[env]
      return nil if raw.nil?

      value, problem = from_environment(key, raw)
      return value unless problem

      unless @ignored[env] == raw
        @ignored[env] = raw
        warn "[rbscope] ignored #{env}=#{Args.shown(raw)}: #{problem}; using the default"
      end
      nil
    end

    # [value, nil] or [nil, what is wrong].
    def from_environment(key, raw)
      unless raw.encoding == Encoding::UTF_8 && raw.valid_encoding?
        raw = raw.b.force_encoding(Encoding::UTF_8)
        return [nil, "it is not valid UTF-8"] unless raw.valid_encoding?
      end
      return [nil, "it is longer than #{MAX_TEXT * 16} bytes"] if raw.bytesize > MAX_TEXT * 16

      if (range = INTEGERS[key])
        n = raw.strip.match?(/\A\+?\d{1,30}\z/) ? Integer(raw.strip.delete_prefix("+"), 10) : nil
        return [n, nil] if n && range.cover?(n)

        [nil, "expected a whole number from #{range.min} to #{range.max}"]
      elsif FLAGS.include?(key)
        flag = FLAG_WORDS[raw.strip.downcase]
        flag.nil? ? [nil, "expected 1, true, yes, on, 0, false, no or off"] : [flag, nil]
      elsif (max = SECONDS[key])
        text = raw.strip
        n = text.match?(/\A\+?(\d{1,15}(\.\d{0,15})?|\.\d{1,15})\z/) ? Float(text.delete_prefix("+")) : nil
        return [n, nil] if n&.positive? && n <= max

        [nil, "expected a number of seconds above 0 and at most #{max}"]
      elsif (choices = CHOICES[key])
        choice = raw.strip.downcase
        return [nil, nil] if choice.empty?

        choices.include?(choice) ? [choice, nil] : [nil, "expected #{choices.join(' or ')}"]
      else
        [raw, nil]
      end
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
