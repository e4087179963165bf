# frozen_string_literal: true

module Rbscope
  class Restore
    # The class-level state of one class or module at the failure: its own class instance
    # variables (`@limit` set on the class itself) and class variables (`@@count`), as the
    # capture stored them (bounded and redacted like every value), shown beside the live
    # class's values today. A restore never writes them into the live class; `apply!` does,
    # when asked. A stand-in class (the app's class not loaded here, Restored::StandIn) is the
    # snapshot's own: it is given them at once.
    class ClassState
      IVAR_GET = Kernel.instance_method(:instance_variable_get)
      IVAR_SET = Kernel.instance_method(:instance_variable_set)
      IVAR_DEFINED = Kernel.instance_method(:instance_variable_defined?)
      CVAR_GET = Module.instance_method(:class_variable_get)
      CVAR_SET = Module.instance_method(:class_variable_set)
      CVAR_DEFINED = Module.instance_method(:class_variable_defined?)

      # The class's path as captured (`Billing::Config`), its variables by name ("@limit",
      # "@@count") and how many the capture left out over its limit.
      attr_reader :class_path, :vars, :left_out

      def initialize(class_path, vars, left_out, live_class)
        @class_path = class_path
        @vars = vars.freeze
        @left_out = left_out
        @live_class = live_class
        @stand_in = Restored::StandIn === live_class
        apply! if @stand_in
      end

      # The value variable `name` ("@limit", :@@count) had at the failure.
      def [](name) = @vars[name.to_s]

      def names = @vars.keys
      def to_h = @vars.dup

      # The class or module of that name in this process (nil when it is not loaded here).
      def live_class = @live_class

      # Today's values in the live class, for the captured names it has (read without calling
      # the class's own methods).
      def live
        klass = @live_class or return {}
        @vars.each_key.with_object({}) do |name, out|
          out[name] = read(klass, name) if defined_in?(klass, name)
        end
      end

      # The names whose live value differs from the captured one (unset ones included;
      # redacted and cut values, whose value is not known, left out).
      def changed
        now = live
        @vars.filter_map do |name, v|
          next if marker?(v)

          name if !now.key?(name) || !same?(now[name], v)
        end
      end

      # Writes the captured values into the live class, and returns the names written.
      # Redacted and cut values are never written: they are listed as skipped.
      def apply!
        klass = @live_class or raise ArgumentError,
                                     "rbscope: #{@class_path} is not loaded in this process: nothing to apply to"
        @vars.each_with_object([]) do |(name, v), written|
          next if marker?(v)

          name.start_with?("@@") ? CVAR_SET.bind_call(klass, name, v) : IVAR_SET.bind_call(klass, name, v)
          written << name
        end
      end

      def inspect
        now = live
        lines = @vars.map do |name, v|
          text = v.inspect
          beside = if @live_class.nil? || @stand_in then ""
                   elsif !now.key?(name) then "   (not set now)"
                   elsif same?(now[name], v) then "   (same now)"
                   else "   (now #{now[name].inspect})"
                   end
          "  #{name} = #{text}#{beside}"
        end
        lines << "  (#{@left_out} more not captured)" if @left_out.positive?
        lines << "  (#{@class_path} is not loaded here: no live values)" if @live_class.nil?
        lines << "  (#{@class_path} is a restored stand-in here: it holds these values)" if @stand_in
        "#<class-level state of #{@class_path} at the failure\n#{lines.join("\n")}\n>"
      end
      alias to_s inspect

      def pretty_print(q) = q.text(inspect)

      private

      def marker?(v) = Restored::Redacted === v || Restored::Cut === v

      def defined_in?(klass, name)
        name.start_with?("@@") ? CVAR_DEFINED.bind_call(klass, name) : IVAR_DEFINED.bind_call(klass, name)
      rescue NameError
        false
      end

      def read(klass, name)
        name.start_with?("@@") ? CVAR_GET.bind_call(klass, name) : IVAR_GET.bind_call(klass, name)
      end

      def same?(a, b)
        a.equal?(b) || a == b
      rescue StandardError
        false
      end
    end
  end
end
