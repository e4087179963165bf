# frozen_string_literal: true

module Rbscope
  # The argument checks of Rbscope's public methods, shared by the agent (agent.rb) and the
  # stand-ins used with RBSCOPE_DISABLE=1 (disabled.rb), so a call that is wrong raises the same
  # TypeError or ArgumentError whether rbscope is on or off: an app tested with rbscope disabled
  # does not meet a new exception in production.
  module PublicArgs
    # Names Rbscope.count_objects takes at most.
    MAX_COUNT_NAMES = 10_000
    # Context values Rbscope.report takes at most.
    MAX_CONTEXT = 100

    module_function

    # Rbscope.start's options, checked (unknown names, wrong kinds, out of range).
    def start(options)
      Settings.option_names(options).each { |key, value| Settings.option(key, value) }
      options
    end

    # Rbscope.report(exception, how:, **context): the `how` to store.
    def report(exception, how, context)
      raise Args.type_error("Rbscope.report(exception)", "an Exception", exception) unless Exception === exception
      if context.size > MAX_CONTEXT
        raise ArgumentError, "rbscope: Rbscope.report takes at most #{MAX_CONTEXT} context values, got #{context.size}"
      end

      Args.text("Rbscope.report(how:)", how, expected: "a String or Symbol", symbol: true, max: 200)
    end

    # Rbscope.snapshot(thread, how:, **context): the `how` to store.
    def snapshot(thread, how, context)
      raise Args.type_error("Rbscope.snapshot(thread)", "a Thread", thread) unless Thread === thread
      raise ArgumentError, "rbscope: Rbscope.snapshot: the thread has ended: nothing to snapshot" unless thread.alive?
      if context.size > MAX_CONTEXT
        raise ArgumentError, "rbscope: Rbscope.snapshot takes at most #{MAX_CONTEXT} context values, got #{context.size}"
      end

      Args.text("Rbscope.snapshot(how:)", how, expected: "a String or Symbol", symbol: true, max: 200)
    end

    # Rbscope.backtrace(thread).
    def thread(thread)
      raise Args.type_error("Rbscope.backtrace(thread)", "a Thread", thread) unless Thread === thread

      thread
    end

    # Rbscope.flush(seconds): seconds as a Float, 0 or more.
    def seconds(seconds)
      unless Numeric === seconds && seconds.real?
        raise TypeError, "rbscope: flush wants a number of seconds (got #{Args.class_name(seconds)})"
      end

      seconds = seconds.to_f
      raise ArgumentError, "rbscope: flush wants 0 or more seconds (got #{seconds})" if seconds.nan? || seconds.negative?

      seconds
    end

    # Rbscope.heap_dump(path, gzip:, gc:, in_process:): [path, gzip, gc, in_process].
    def heap_dump(path, gzip, gc, in_process)
      unless NilClass === path
        path = Args.path("Rbscope.heap_dump(path)", path, expected: "nil or a path (a String or a Pathname)")
      end
      [path, Args.flag("Rbscope.heap_dump(gzip:)", gzip), Args.flag("Rbscope.heap_dump(gc:)", gc),
       Args.flag("Rbscope.heap_dump(in_process:)", in_process)]
    end

    # Rbscope.count_objects(names): the names as Strings.
    def class_names(names)
      what = "Rbscope.count_objects(names)"
      expected = "an Array of class names (Strings, Symbols or named Modules, at most #{MAX_COUNT_NAMES})"
      list = NilClass === names ? [] : names
      list = [list] unless Array === list
      raise ArgumentError, "rbscope: #{what} expects #{expected}, got #{list.size} names" if list.size > MAX_COUNT_NAMES

      list.map do |name|
        if Module === name
          name = Args::MODULE_NAME.bind_call(name)
          raise ArgumentError, "rbscope: #{what} expects named classes or modules, got an anonymous one" unless name
        end
        Args.text(what, name, expected: expected, symbol: true, max: 1000, empty: false)
      end
    end
  end
end
