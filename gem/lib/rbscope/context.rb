# frozen_string_literal: true

module Rbscope
  # The Ruby-side context of a report: thread name, loaded gems, and caller-supplied facts.
  module Context
    # The characters of each caller-supplied fact a report keeps (their number: PublicArgs).
    MAX_TEXT = 1000

    module_function

    # `extra` (pairs already made by #extra).
    def for_report(extra, thread = Thread.current)
      name = thread.name || (thread == Thread.main ? "main" : nil)
      [name, gems, extra]
    end

    # The context of a live snapshot of `thread` asked for from outside (`rbscope snapshot -p`).
    def for_thread(thread) = for_report([], thread)

    # Rbscope.report's keyword arguments as [name, text] pairs (their number checked by
    # PublicArgs.report). Any value is taken (its #to_s, or its class when #to_s raises or is
    # not a String).
    def extra(context)
      context.map { |k, v| [text(k), text(v)] }
    end

    # `value` as UTF-8 text of at most MAX_TEXT characters, whatever it is.
    def text(value)
      s = case value
          when String then value
          when Symbol then Args::SYMBOL_TO_S.bind_call(value)
          when nil then ""
          when true, false then value.to_s
          when Integer then Args::INTEGER_TO_S.bind_call(value)
          when Float then Args::FLOAT_TO_S.bind_call(value)
          else
            begin
              to_s = value.to_s
              String === to_s ? to_s : Args.shown(value)
            rescue StandardError, SystemStackError
              Args.shown(value)
            end
          end
      s = s.byteslice(0, MAX_TEXT * 4) if s.bytesize > MAX_TEXT * 4
      s = Settings.utf8(s)
      s = s.scrub unless s.valid_encoding?
      s.size > MAX_TEXT ? s[0, MAX_TEXT] : s
    rescue StandardError, SystemStackError
      Args.shown(value)
    end

    def gems
      specs = defined?(Gem) ? Gem.loaded_specs : {}
      return @gems if @gems && @gems_count == specs.size

      @gems_count = specs.size
      @gems = specs.map { |name, spec| [name, spec.version.to_s] }.sort
    end
  end
end
