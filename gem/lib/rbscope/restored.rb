# frozen_string_literal: true

module Rbscope
  # Stand-ins for what a restore cannot (or must not) rebuild. Each says plainly what it stands
  # for when inspected.
  module Restored
    # An object whose class does not exist in this process (or has no plain constant name).
    # It is a plain Object so that IRB can use it as the console's self directly (its ivars
    # are the console's `@x`, constants resolve as at top level); the app's methods say
    # plainly that they are missing.
    class Missing
      def initialize(class_name)
        @__class_name = class_name.to_s
        @__ivars = {}
      end

      def __class_name__ = @__class_name
      def __ivars__ = @__ivars

      def instance_variable_get(name) = @__ivars[name.to_s]
      def instance_variables = @__ivars.keys.map(&:to_sym)

      def inspect
        ivars = @__ivars.map { |k, v| " #{k}=#{(v.inspect rescue '?')}" }.join(",") # rubocop:disable Style/RescueModifier
        "#<#{@__class_name} (restored stand-in: class not loaded here)#{ivars}>"
      end
      alias to_s inspect

      def respond_to?(name, include_all = false) = %i[inspect to_s __class_name__ __ivars__].include?(name.to_sym)

      def method_missing(name, *)
        ::Kernel.raise ::NoMethodError, "#{name} on a restored stand-in for #{@__class_name} (the class is not loaded in this process)"
      end

      def respond_to_missing?(*) = false
    end

    # A proc, lambda or method: its code is never stored or run. It answers what was stored
    # about it (`lambda?`, `arity`, `source_location`, and for a method `name`, `owner`,
    # `receiver`); calling it raises.
    class Callable
      attr_reader :class_name, :source_location, :arity, :name, :owner, :receiver

      def initialize(class_name, label, arity, source_location, lambda: nil, name: nil, owner: nil,
                     receiver: nil)
        @class_name = class_name
        @label = label
        @arity = arity
        @source_location = source_location
        @lambda = lambda
        @name = name
        @owner = owner
        @receiver = receiver
      end

      # A Method (and a Method's to_proc) behaves as a lambda.
      def lambda? = @lambda.nil? || @lambda

      def call(*) = raise(NotImplementedError, "a restored #{@class_name} cannot be called: its code was not stored")
      alias === call
      alias yield call
      alias [] call

      # A Proc that raises when called, for `&callable`.
      def to_proc
        me = self
        proc { |*| me.call }
      end

      def inspect
        where = @source_location ? @source_location.join(":") : "native"
        "#<#{@class_name} #{@label} (restored stand-in) #{where} arity #{@arity}>"
      end
      alias to_s inspect

      # A hash's default proc: a real Proc (Hash#default_proc= takes nothing else) that never
      # runs the app's code: a lookup of a missing key raises. It answers `callable`'s metadata.
      def self.default_proc(callable)
        text = "#<Proc default proc (restored stand-in: its code was not stored)>"
        text = callable.inspect.sub("(restored stand-in)", "default proc (restored stand-in)") if callable.is_a?(Callable)
        pr = proc do |_hash, key|
          ::Kernel.raise NotImplementedError,
                         "#{text} cannot run: the key #{key.inspect[0, 60]} is not in this restored hash"
        end
        pr.define_singleton_method(:inspect) { text }
        pr.define_singleton_method(:to_s) { text }
        if callable.is_a?(Callable)
          pr.define_singleton_method(:arity) { callable.arity }
          pr.define_singleton_method(:lambda?) { callable.lambda? }
          pr.define_singleton_method(:source_location) { callable.source_location }
        end
        pr
      end
    end

    # IO, Thread, Mutex, sockets, other C data: class and the preview taken at capture.
    class Opaque
      attr_reader :class_name, :preview

      def initialize(class_name, preview)
        @class_name = class_name
        @preview = preview
      end

      def inspect = "#<#{@class_name} (opaque, restored stand-in) #{@preview}>"
      alias to_s inspect
    end

    # What a marker (a redacted or a cut value) does: it inspects as what it is, and is inert:
    # any method the app calls on it answers the marker itself, so a container holding one
    # (an ActiveRecord record, a form object) still inspects, lists its attributes and prints.
    # Ruby's implicit conversions (to_str, to_ary ...) are not answered, so it never passes
    # for a String or an Array.
    class Marker
      IMPLICIT = %i[to_str to_ary to_hash to_int to_proc to_io to_regexp to_path to_sym to_open
                    marshal_dump _dump to_yaml encode_with init_with].freeze

      def inspect = to_s
      def pretty_print(q) = q.text(to_s)
      def dup = self
      def clone(*) = self
      def as_json(*) = to_s
      def to_json(*) = to_s.inspect
      def blank? = false
      def present? = true

      def method_missing(name, *)
        return super if IMPLICIT.include?(name)

        self
      end

      def respond_to_missing?(*) = false
    end

    # A value that was redacted as a secret: it stays redacted.
    class Redacted < Marker
      attr_reader :reason

      def initialize(reason)
        super()
        @reason = reason
        freeze
      end

      def to_s = "[REDACTED: #{@reason}]"
    end

    # A value left out by a capture limit.
    class Cut < Marker
      attr_reader :reason

      def initialize(reason)
        super()
        @reason = reason
        freeze
      end

      def to_s = "[not captured: #{@reason}]"
    end

    # A string, array, hash or set that a capture limit cut short: what was kept, marked. It
    # extends the object, so `inspect` (and IRB's output) says so, and `Rbscope::Restored::Truncated
    # === obj` tells.
    module Truncated
      NOTES = ObjectSpace::WeakMap.new

      def self.mark(obj, note)
        obj.extend(self)
        NOTES[obj] = note
        obj
      end

      # What was kept, e.g. "kept 4096 of 10000 bytes".
      def rbscope_cut = NOTES[self]

      def inspect = "#{super} [cut: #{NOTES[self]}]"

      def pretty_print(q)
        super
        q.text(" [cut: #{NOTES[self]}]")
      end
    end

    # One value a capture limit cut (`snapshot.cut_values`): where it was reached from
    # (`frame 0: order.@lines[3]`), the restored value (the marker, or the shortened
    # object) and why.
    CutValue = Struct.new(:where, :value, :reason) do
      def inspect = "#<cut #{where}: #{reason}>"
      alias_method :to_s, :inspect
      def pretty_print(q) = q.text(inspect)
    end

    # A class or module that had no name (`Class.new`): a stand-in class or module of the same
    # kind (with the same superclass when it is loaded here), named after the original.
    module Anonymous
      def self.build(is_class, path, superclass)
        label = "#{path || (is_class ? '#<Class:(anonymous)>' : '#<Module:(anonymous)>')} (restored anonymous #{is_class ? 'class' : 'module'})"
        mod = is_class ? Class.new(superclass.is_a?(Class) ? superclass : Object) : Module.new
        mod.define_singleton_method(:inspect) { label }
        mod.define_singleton_method(:to_s) { label }
        mod
      end
    end
  end
end
