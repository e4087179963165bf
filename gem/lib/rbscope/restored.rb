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
            want(wanted, o[4], o[1] == "Class" ? :class : :module) if o[0].to_s == "module"
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

    # A proc, lambda or method: its code is never stored or run.
    class Callable
      attr_reader :class_name, :source_location, :arity

      def initialize(class_name, name, arity, source_location)
        @class_name = class_name
        @name = name
        @arity = arity
        @source_location = source_location
      end

      def call(*) = raise(NotImplementedError, "a restored #{@class_name} cannot be called: its code was not stored")

      def inspect
        where = @source_location ? @source_location.join(":") : "native"
        "#<#{@class_name} #{@name} (restored stand-in) #{where} arity #{@arity}>"
      end
      alias to_s inspect
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

    # A value that was redacted as a secret: it stays redacted.
    class Redacted
      attr_reader :reason

      def initialize(reason)
        @reason = reason
        freeze
      end

      def inspect = "[REDACTED: #{@reason}]"
      alias to_s inspect
    end

    # A value left out by a capture limit.
    class Cut
      attr_reader :reason

      def initialize(reason)
        @reason = reason
        freeze
      end

      def inspect = "[not captured: #{@reason}]"
      alias to_s inspect
    end
  end
end
