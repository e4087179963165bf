# frozen_string_literal: true

module Rbscope
  class Restore
    # The console's binding for a frame: self is the frame's self, the lexical scope is the
    # frame's class and module nesting (so the app's constants resolve as in the failing line
    # and none of rbscope's own shadow them), `__method__` is the frame's method, and the
    # binding has no locals but the ones the console sets.
    #
    # Ruby takes the lexical scope (the cref) from where code is written, and only
    # `Module#module_eval` with a string adds a module to it. So the binding is made by our own
    # fixed text (STEP, never anything stored in a snapshot) that module_evals itself in each
    # module of the nesting in turn, outermost first, and at the innermost defines the method
    # that returns the binding. It starts from START, a block written at this file's top level
    # (outside `module Rbscope`): its scope is the top level, it is in no method, and this
    # file has no top-level locals for it to capture. STEP uses no locals either (the state is
    # in a thread-local), so the binding's `local_variables` are the frame's alone.
    module FrameScope
      STEP = "::Rbscope::Restore::FrameScope.descend&.module_eval(::Rbscope::Restore::FrameScope::STEP, " \
             "*::Rbscope::Restore::FrameScope.where) || ::Rbscope::Restore::FrameScope.bind(" \
             "::Rbscope::Restore::FrameScope.method_name ? ::Module.new { " \
             "define_method(::Rbscope::Restore::FrameScope.method_name) { ::Kernel.binding } } : " \
             "::Kernel.proc { ::Kernel.binding })"

      KEY = :__rbscope_frame_scope__

      # Labels are `Shop::Cart#check(...)`, `Shop::Pricing.round(x)`,
      # `Shop::Cart$singleton#meth()`, `Klass$refinement@Mod::Refines#meth()`.
      OWNER = /\A(?<owner>(?:::)?[A-Z]\w*(?:::[A-Z]\w*)*)(?:#|\.|\$singleton#|\$refinement@(?<refined_in>(?:::)?[A-Z]\w*(?:::[A-Z]\w*)*)#)/.freeze

      class << self
        # A Binding for `self_object` in the lexical scope `nesting` (outermost first), in a
        # method named `method_name` (nil: in no method, like `<main>`), at `path`:`lineno`
        # (what `Binding#source_location` answers).
        def binding_for(self_object, nesting, method_name, path, lineno)
          Thread.current[KEY] = { self: self_object, nesting: nesting, at: -1, method: symbol(method_name),
                                  where: [file(path), Integer(lineno || 1)] }
          START.call
        ensure
          Thread.current[KEY] = nil
        end

        # The modules that make up a frame's lexical scope, outermost first, from what the
        # snapshot stores about the frame (its label, naming the method's owner, and its self),
        # found by constant lookup only. The top level (Object) is left out, as Ruby does.
        def nesting(label, self_object)
          label = label.to_s
          return [] unless label.valid_encoding?

          m = OWNER.match(label)
          path = m && (m[:refined_in] || m[:owner])
          # Code in a class or module body runs with that class as self.
          path = Module === self_object ? module_name(self_object) : nil if body?(label)
          return [] unless path

          resolve(path)
        end

        # The frame's path as Ruby takes a file name for code it evaluates.
        def file(path)
          path = path.to_s
          path.include?("\0") ? "(restored frame)" : path
        end

        # [A, A::B, A::B::C] for "A::B::C", as far as each is a module defined here.
        def resolve(path)
          found = []
          path.delete_prefix("::").split("::").inject(Object) do |outer, name|
            break found unless outer.const_defined?(name, false)

            inner = outer.const_get(name, false)
            break found unless inner.is_a?(Module)

            found << inner unless inner == Object
            inner
          end
          found
        rescue NameError, LoadError
          found
        end

        # For STEP: the next module to enter, nil at the innermost.
        def descend
          s = Thread.current[KEY]
          s[:at] += 1
          s[:nesting][s[:at]]
        end

        def where = Thread.current[KEY][:where]
        def method_name = Thread.current[KEY][:method]

        # For STEP, at the innermost: the binding itself, with the frame's self.
        def bind(binder)
          obj = Thread.current[KEY][:self]
          if binder.is_a?(Module)
            binder.instance_method(method_name).bind_call(obj)
          else
            ::BasicObject.instance_method(:instance_exec).bind_call(obj, &binder)
          end
        end

        private

        def symbol(name)
          name = name.to_s
          name.to_sym unless name.empty? || !name.valid_encoding?
        end

        def body?(label) = label.to_s.match?(/#<(?:class|module):/)

        def module_name(mod)
          name = Module.instance_method(:name).bind_call(mod)
          name if name && CONSTANT_PATH.match?(name)
        end
      end
    end
  end
end

# At the top level on purpose (see FrameScope): no locals are defined at this file's top level.
Rbscope::Restore::FrameScope::START = -> { ::Kernel.eval(::Rbscope::Restore::FrameScope::STEP, nil, *::Rbscope::Restore::FrameScope.where) }
