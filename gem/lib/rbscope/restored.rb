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

    # What a restore defines under an app's names when the app's own class or module is not
    # loaded in the restoring process (a script's snapshot restored without `-r`): a class with
    # the app's name, so `self.class.name`, struct members and instance variable readers work.
    # Each is extended with StandIn (`Shop::Cart.is_a?(Rbscope::Restored::StandIn)`), says so
    # in its inspect, and answers the app's other methods with a NoMethodError that says why.
    # Nothing is defined under a name that already exists: a loaded app gives real instances.
    module StandIn
      NOTE = "restored stand-in: class not loaded here"

      def inspect = "#{name} (#{NOTE})"

      # Included in stand-in classes (not exceptions, which keep Exception's own behaviour).
      module Instance
        def inspect
          klass = Kernel.instance_method(:class).bind_call(self)
          if is_a?(Struct)
            fields = each_pair.map { |k, v| "#{k}=#{(v.inspect rescue '?')}" }.join(", ") # rubocop:disable Style/RescueModifier
            "#<struct #{klass.name} (#{NOTE}) #{fields}>"
          else
            ivars = instance_variables.map do |k|
              " #{k}=#{(instance_variable_get(k).inspect rescue '?')}" # rubocop:disable Style/RescueModifier
            end
            "#<#{klass.name} (#{NOTE})#{ivars.join(',')}>"
          end
        end
        alias to_s inspect

        def pretty_print(q) = q.text(inspect)

        def method_missing(name, *)
          klass = Kernel.instance_method(:class).bind_call(self)
          error = ::NoMethodError.new(
            "undefined method '#{name}' for a restored stand-in of #{klass.name} (the app's class is not loaded " \
            "in this process: restore with -r to load it)", name
          )
          error.set_backtrace(caller(1)) # raised where it was called, not here
          ::Kernel.raise error
        end

        def respond_to_missing?(*) = false
      end

      SEGMENT = /\A[A-Z]\w*\z/.freeze
      IVAR = /\A@[a-z_][A-Za-z0-9_]*\z/.freeze

      class << self
        # Defines stand-ins for the classes and modules that `objects` (a snapshot's array form)
        # name and that are not defined here: found by constant lookup only, made with
        # Class.new/Module.new/Struct.new, never from stored text. Returns the names defined.
        def define(objects)
          wanted = {}
          objects.each { |o| note(wanted, o) }
          wanted.compact!
          wanted.transform_keys! { |name| name.delete_prefix("::") }
          wanted.keys.sort_by { |n| n.count(":") }.select { |name| define_one(name, wanted) }
        end

        private

        def note(wanted, o)
          case o[0]
          when :string, :array, :hash then nil
          when :object
            w = want(wanted, o[1], :class) or return
            ivars = o[3]
            (0...ivars.size).step(2) { |i| w[:ivars][ivars[i]] = true }
          when :struct
            w = want(wanted, o[1], :struct) or return
            w[:members] ||= o[4].each_slice(2).map(&:first)
          when :exception then want(wanted, o[1], :exception)
          else
            # By name: the native side's :module is not always the literal's symbol.
            return unless o[0].to_s == "module"

            is_class = o[5].nil? ? o[1].to_s.end_with?("Class") : o[5]
            want(wanted, o[4], is_class ? :class : :module)
          end
        end

        # The entry for `name`; nil (remembered) for a name that is not a constant path or is
        # defined here.
        def want(wanted, name, kind)
          return wanted[name] if wanted.key?(name)

          wanted[name] = missing?(name) ? { kind: kind, ivars: {} } : nil
        end

        def missing?(name)
          name.is_a?(String) && Rbscope::Restore::CONSTANT_PATH.match?(name) && !Object.const_defined?(name)
        rescue NameError, TypeError
          false
        end

        # Walks the path from Object and defines what is missing (intermediate names as
        # modules); true when it defined the name itself.
        def define_one(name, wanted)
          outer = Object
          parts = name.split("::")
          parts.each_with_index do |part, i|
            return false unless SEGMENT.match?(part)

            if (found = existing(outer, part))
              return false unless found.is_a?(Module)

              outer = found
              next
            end
            made = make(i == parts.size - 1 ? wanted[name] : { kind: :module })
            outer.const_set(part, made)
            return true if i == parts.size - 1

            outer = made
          end
          false
        rescue NameError, ArgumentError, TypeError, LoadError
          false
        end

        # The constant when it is defined, or can be loaded (an autoload, or an autoloader's
        # const_missing, as in Rails' classic autoloader); else nil.
        def existing(outer, part)
          outer.const_get(part, false)
        rescue NameError
          nil
        end

        def make(spec)
          klass =
            case spec[:kind]
            when :module then Module.new
            when :exception then Class.new(StandardError)
            when :struct
              members = Array(spec[:members]).map(&:to_sym)
              members.empty? ? Class.new : Struct.new(*members)
            else Class.new
            end
          klass.extend(StandIn)
          if klass.is_a?(Class) && spec[:kind] != :exception
            klass.include(Instance)
            readers(klass, spec[:ivars].keys)
          end
          klass
        end

        def readers(klass, ivars)
          ivars.each do |ivar|
            next unless IVAR.match?(ivar)

            reader = ivar.delete_prefix("@").to_sym
            next if klass.method_defined?(reader) || klass.private_method_defined?(reader)

            klass.send(:attr_reader, reader)
          end
        end
      end
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
