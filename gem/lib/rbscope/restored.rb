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
