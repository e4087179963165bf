# frozen_string_literal: true

module Rbscope
  # The Ruby half of live attach (`rbscope trace`, `rbscope eval`). The agent's Ruby thread calls
  # these; nothing here runs on an app thread.
  #
  # Tracing: selectors arrive parsed (by the native side); they are resolved to methods here,
  # and each is hooked natively (a TracePoint targeted at that one method). A C method has no
  # Ruby code to target, so it is wrapped: a module prepended to its class (once, then reused)
  # gets a Ruby method of the same name that calls `super`, and that wrapper is targeted. When
  # the last trace using a wrapper detaches, the wrapper method is removed (the empty module
  # stays in the ancestors; prepending cannot be undone).
  #
  # Eval: each eval runs on a new thread (named rbscope-eval), inside the Rails executor when
  # Rails is loaded, so app threads are never interrupted, joined or woken.
  module Live
    # C functions that look at or change their caller's frame: a Ruby wrapper in between would
    # change what they do, so they are never wrapped.
    FRAME_SENSITIVE = %i[
      binding block_given? iterator? local_variables caller caller_locations __method__
      __callee__ __dir__ eval require_relative raise fail proc lambda set_trace_func
      method_missing respond_to_missing? initialize initialize_copy initialize_dup
      initialize_clone instance_eval instance_exec class_eval module_eval class_exec
      module_exec define_method public private protected module_function using refine
      trace_var untrace_var
    ].freeze
    # Methods one selector may hook.
    MAX_TARGETS = 500
    # Console bindings kept (the least recently used is dropped first).
    MAX_BINDINGS = 16
    # What Ruby says about code that is not finished yet (a console reads another line).
    INCOMPLETE = /unexpected end-of-input|meets end of file|unterminated (?:string|regexp|list|quoted)/.freeze

    class Refusal < StandardError; end
    # The class, module or method is not defined (yet).
    class NotYet < Refusal; end

    # Prepended to Module when a selector first waits for its code (`rbscope run -m`, `trace
    # -m` with code not loaded yet): tells Live each time a method is defined, so a selector
    # waiting for that method is hooked right then, before its first call, rather than at the
    # next look (every 100 ms). While nothing waits it costs a definition one Hash check. A
    # class whose own `self.method_added` does not call super is still found by the looks.
    module Defined
      private

      def method_added(name)
        super
      ensure
        Live.__defined(name)
      end

      def singleton_method_added(name)
        super
      ensure
        Live.__defined(name)
      end
    end

    @sessions = {}
    @wrappers = {}
    @wrapped = Hash.new(0)
    @waiting = {}
    @firehose = {}
    @evals = {}
    @bindings = {}
    @eval_lock = Mutex.new
    @traced_lock = Mutex.new
    @traced_signal = ConditionVariable.new
    @traced = false
    @retry_lock = Mutex.new

    class << self
      # Waits until a trace has been installed, or `seconds` passed (`rbscope run`'s hold).
      def hold_until_traced(seconds)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
        @traced_lock.synchronize do
          until @traced
            left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
            break if left <= 0

            @traced_signal.wait(@traced_lock, left)
          end
        end
      end

      def note_traced
        @traced_lock.synchronize do
          @traced = true
          @traced_signal.broadcast
        end
      end

      # Hooks what `selectors` name for session `id`. Each selector is
      # [index, text, owner, kind, method, argument_names, optional]. Returns
      # [true, hooked, skipped, waiting] or [false, message]. An optional selector that names
      # nothing loaded is reported in `skipped` instead of failing the trace; with
      # `wait_for_code`, one whose class or method is not defined yet waits (see `retry`).
      def install(id, selectors, firehose, wait_for_code = false)
        hooked = []
        skipped = []
        waiting = []
        @firehose[id] = firehose
        selectors.each do |selector|
          _index, text, _owner, _kind, _name, _arg_names, optional = selector
          begin
            hooked.concat(hook_selector(id, selector, firehose, skipped))
          rescue NotYet => e
            raise Refusal, e.message unless wait_for_code || optional

            if wait_for_code
              (@waiting[id] ||= []) << selector
              waiting << "#{text} (#{e.message.delete_prefix("#{text}: ")})"
              watch_definitions
            else
              skipped << "#{e.message} (optional: skipped)"
            end
          rescue Refusal => e
            raise unless optional

            skipped << "#{e.message} (optional: skipped)"
          end
        end
        if firehose && selectors.any?
          skipped << "Ruby methods named by -m are traced by --firehose already (without captured values)"
        end
        note_traced
        [true, hooked, skipped, waiting]
      rescue Refusal => e
        [false, e.message]
      rescue Exception => e # rubocop:disable Lint/RescueException
        [false, "#{e.class}: #{e.message}"]
      end

      # Tries session `id`'s waiting selectors again: [labels hooked now, how many still wait].
      # On the agent's Ruby thread (the looks), or on the app thread that just defined a
      # method one of them names (see Defined); one at a time.
      def retry(id)
        @retry_lock.synchronize do
          waiting = @waiting[id] || []
          hooked = []
          waiting.reject! do |selector|
            hooked.concat(hook_selector(id, selector, @firehose[id], []))
            true
          rescue NotYet
            false
          rescue Refusal
            true # it exists now but cannot be traced: nothing more to wait for
          end
          @waiting.delete(id) if waiting.empty?
          [hooked, waiting.size]
        end
      rescue Exception # rubocop:disable Lint/RescueException
        [[], 0]
      end

      # A method named `name` was just defined (Defined, on the defining thread): the sessions
      # with a selector waiting for a method of that name, or for every method of a class, try
      # their selectors now. Skipped while a retry runs (the looks still find it), so this
      # never waits on the lock inside the app's class body; never raises into the app.
      def __defined(name)
        return if @waiting.empty? || @retry_lock.locked?

        name = name.to_s
        ids = @waiting.filter_map do |id, selectors|
          id if selectors.any? { |s| s[4].nil? || s[4].to_s == name }
        end
        ids.each { |id| Native.trace_retry(id) }
        nil
      rescue Exception # rubocop:disable Lint/RescueException
        nil
      end

      # Removes the wrappers session `id` used (its hooks are removed natively).
      def uninstall(id)
        @waiting.delete(id)
        @firehose.delete(id)
        (@sessions.delete(id) || []).each do |key|
          @wrapped[key] -= 1
          next if @wrapped[key].positive?

          @wrapped.delete(key)
          wrapper, meth = key
          wrapper.send(:remove_method, meth) if wrapper.instance_methods(false).include?(meth) ||
                                                wrapper.private_instance_methods(false).include?(meth)
        end
        nil
      end

      # Evaluates `code` on a new thread, in console `binding_id`'s kept binding (nil: a fresh
      # copy of TOPLEVEL_BINDING), and reports with Native.eval_done.
      def eval_async(code, token, binding_id = nil)
        @eval_lock.synchronize do
          @evals[token] = Thread.new do
            Thread.current.name = "rbscope-eval"
            Thread.current.report_on_exception = false
            ok, text, incomplete = evaluate(code, binding_id)
            Native.eval_done(token, ok ? true : false, utf8(text), incomplete ? true : false)
          ensure
            @eval_lock.synchronize { @evals.delete(token) }
          end
        end
        nil
      end

      def cancel_eval(token)
        thread = @eval_lock.synchronize { @evals.delete(token) }
        thread&.kill
        nil
      end

      private

      def watch_definitions
        return if @defined_watched

        @defined_watched = true
        Module.prepend(Defined)
      end

      # Hooks what one selector names; the labels. Raises NotYet when its class or method is
      # not defined, Refusal when it cannot be traced; notes about part of it go to `skipped`.
      def hook_selector(id, selector, firehose, skipped)
        index, text, owner, kind, name, arg_names, = selector
        keys = (@sessions[id] ||= [])
        targets = resolve(text, owner, kind, name)
        if targets.size > MAX_TARGETS
          skipped << "#{text}: #{targets.size} methods match; only the first #{MAX_TARGETS} are traced"
          targets = targets.first(MAX_TARGETS)
        end
        hooked = []
        targets.each do |mod, meth, single|
          um = mod.instance_method(meth)
          next if ruby_code?(um) && firehose

          hooked << hook(id, index, text, mod, meth, um, arg_names, keys)
        rescue NotYet
          raise
        rescue Refusal => e
          raise if single

          skipped << e.message
        end
        hooked
      end

      def hook(id, index, text, mod, meth, um, arg_names, keys)
        if ruby_code?(um)
          params = um.parameters.map { |_, n| n.to_s }
          missing = arg_names - params
          unless missing.empty?
            raise Refusal, "#{text}: #{um.owner}##{meth} has no argument named #{missing.join(', ')} " \
                           "(its parameters: #{params.empty? ? 'none' : params.join(', ')})"
          end
          filter = um.owner == mod ? nil : mod
          begin
            return Native.trace_hook(id, um, um.owner, meth.to_s, filter, index)
          rescue RuntimeError
            # Not an iseq method (attr_reader and friends): wrap it like a C method.
          end
        end
        unless arg_names.empty?
          raise Refusal, "#{text}: #{um.owner}##{meth} is a C method: its arguments have no names; " \
                         "capture self or @ivars"
        end
        wrapper = wrap(mod, meth, um, text)
        keys << [wrapper, meth]
        Native.trace_ignore_owner(id, wrapper)
        Native.trace_hook(id, wrapper.instance_method(meth), um.owner, meth.to_s, nil, index)
      end

      def ruby_code?(um)
        !um.source_location.nil?
      end

      def wrap(mod, meth, um, text)
        if FRAME_SENSITIVE.include?(meth)
          raise Refusal, "#{text}: #{um.owner}##{meth} reads its caller's frame; a wrapper would " \
                         "change what it does, so it is not traced"
        end
        unless meth.to_s.match?(/\A(?:[A-Za-z_][A-Za-z0-9_]*[?!=]?|\[\]=?|[-+*\/%<>=!~^&|`]+@?|\*\*)\z/)
          raise Refusal, "#{text}: cannot wrap a method named #{meth.inspect}"
        end
        wrapper = (@wrappers[mod] ||= Module.new.tap { |w| mod.prepend(w) })
        key = [wrapper, meth]
        if @wrapped[key].zero?
          wrapper.module_eval("def #{meth}(*args, **kw, &blk)\n super\nend", __FILE__, __LINE__)
          if mod.private_method_defined?(meth)
            wrapper.send(:private, meth)
          elsif mod.protected_method_defined?(meth)
            wrapper.send(:protected, meth)
          end
        end
        @wrapped[key] += 1
        wrapper
      end

      def resolve(text, owner, kind, name)
        if kind == "anywhere"
          found = []
          wrappers = @wrappers.values
          ObjectSpace.each_object(Module) do |m|
            next if wrappers.include?(m)
            next unless m.method_defined?(name, false) || m.private_method_defined?(name, false)

            found << [m, name.to_sym, false]
          end
          raise NotYet, "#{text}: no loaded class or module defines #{name}" if found.empty?

          return found
        end
        base = constant(owner, text)
        mod = kind == "singleton" ? base.singleton_class : base
        if name
          unless mod.method_defined?(name) || mod.private_method_defined?(name)
            what = kind == "singleton" ? "singleton method #{owner}.#{name}" : "instance method #{owner}##{name}"
            raise NotYet, "#{text}: there is no #{what}"
          end
          [[mod, name.to_sym, true]]
        else
          names = mod.instance_methods(false) + mod.private_instance_methods(false)
          raise Refusal, "#{text}: #{owner} defines no methods of its own" if names.empty?

          names.sort.map { |n| [mod, n, false] }
        end
      end

      def constant(path, text)
        mod = path.delete_prefix("::").split("::").inject(Object) do |scope, part|
          if scope.autoload?(part)
            raise NotYet, "#{text}: #{part} is not loaded yet (autoload); trace it once the app has loaded it"
          end
          raise NotYet, "#{text}: no constant #{path} is defined" unless scope.const_defined?(part)

          scope.const_get(part)
        end
        raise Refusal, "#{text}: #{path} is a #{mod.class}, not a class or module" unless mod.is_a?(Module)

        mod
      end

      def evaluate(code, binding_id)
        return [false, "", true] if incomplete?(code)

        target = binding_for(binding_id)
        value = in_app { target.eval(code, "(rbscope eval)", 1) }
        [true, safe_inspect(value), false]
      rescue Exception => e # rubocop:disable Lint/RescueException
        [false, describe_error(e), false]
      end

      def incomplete?(code)
        RubyVM::InstructionSequence.compile(code)
        false
      rescue SyntaxError => e
        INCOMPLETE.match?(e.message)
      end

      def binding_for(id)
        return TOPLEVEL_BINDING.dup if id.nil?

        @eval_lock.synchronize do
          kept = @bindings.delete(id) || TOPLEVEL_BINDING.dup
          @bindings[id] = kept
          @bindings.shift while @bindings.size > MAX_BINDINGS
          kept
        end
      end

      def in_app(&block)
        app = defined?(::Rails) && ::Rails.respond_to?(:application) ? ::Rails.application : nil
        return yield unless app.respond_to?(:executor)

        app.executor.wrap(&block)
      end

      # What an eval answers, as the agent takes it: a String in valid UTF-8 (an #inspect or an
      # error message may be in another encoding, hold invalid bytes, or not be a String).
      def utf8(text)
        text = Args.shown(text) unless String === text
        text = text.encode(Encoding::UTF_8, invalid: :replace, undef: :replace) unless text.encoding == Encoding::UTF_8
        text.valid_encoding? ? text : text.scrub
      rescue StandardError
        Args.shown(text)
      end

      def safe_inspect(value)
        value.inspect.to_s
      rescue Exception => e # rubocop:disable Lint/RescueException
        klass = Kernel.instance_method(:class).bind_call(value)
        "#<#{klass} (inspect raised #{e.class}: #{e.message})>"
      end

      def describe_error(error)
        lines = ["#{error.class}: #{error.message}"]
        trace = error.backtrace || []
        trace = trace.take_while { |l| !l.start_with?(__FILE__) }
        lines.concat(trace.first(50).map { |l| "    #{l}" })
        lines.join("\n")
      end
    end
  end
end
