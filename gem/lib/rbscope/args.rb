# frozen_string_literal: true

module Rbscope
  # Checks of the arguments of Rbscope's public methods. A wrong kind of object is a TypeError,
  # a right kind with a value out of range an ArgumentError; each message names the method and
  # the argument and says what is expected. Only core methods are called on the value (through
  # `Module#===` and methods taken from core classes), so an odd object (a BasicObject, one
  # whose #inspect or #class raises, a frozen one) gets the same answer as any other.
  module Args
    KERNEL_CLASS = Kernel.instance_method(:class)
    STRING_INSPECT = String.instance_method(:inspect)
    SYMBOL_INSPECT = Symbol.instance_method(:inspect)
    INTEGER_TO_S = Integer.instance_method(:to_s)
    FLOAT_TO_S = Float.instance_method(:to_s)
    MODULE_NAME = Module.instance_method(:name)
    # The longest text of a value a message shows.
    SHOWN = 80

    module_function

    # `value` as a message shows it: the literal of a core value (cut), otherwise its class.
    def shown(value)
      text = case value
             when nil, true, false then value.inspect
             when Integer then INTEGER_TO_S.bind_call(value)
             when Float then FLOAT_TO_S.bind_call(value)
             when String then STRING_INSPECT.bind_call(value)
             when Symbol then SYMBOL_INSPECT.bind_call(value)
             else return "a#{'n' if class_name(value).match?(/\A[AEIOU]/)} #{class_name(value)}"
             end
      text.size > SHOWN ? "#{text[0, SHOWN]}... (#{text.size} characters)" : text
    rescue Exception # rubocop:disable Lint/RescueException
      "an object"
    end

    # The name of `value`'s class, whatever `value` is.
    def class_name(value)
      MODULE_NAME.bind_call(KERNEL_CLASS.bind_call(value)) || "anonymous class"
    rescue Exception # rubocop:disable Lint/RescueException
      "unknown class"
    end

    def type_error(what, expected, value)
      TypeError.new("rbscope: #{what} expects #{expected}, got #{shown(value)}")
    end

    def arg_error(what, expected, value)
      ArgumentError.new("rbscope: #{what} expects #{expected}, got #{shown(value)}")
    end

    # true or false.
    def flag(what, value)
      return value if TrueClass === value || FalseClass === value

      raise type_error(what, "true or false", value)
    end

    # An Integer in `range`.
    def integer(what, value, range)
      expected = "an Integer from #{range.min} to #{range.max}"
      raise type_error(what, expected, value) unless Integer === value
      raise arg_error(what, expected, value) unless range.cover?(value)

      value
    end

    # A String (or, when `symbol`, a Symbol) in a valid encoding, with no NUL byte, of at most
    # `max` bytes: the same String, frozen copies left as they are.
    def text(what, value, expected: "a String", max: 4096, symbol: false, empty: true)
      value = SYMBOL_TO_S.bind_call(value) if symbol && Symbol === value
      raise type_error(what, expected, value) unless String === value

      utf8 = utf8(value) if value.valid_encoding?
      problem = if !value.valid_encoding? then "is not valid #{value.encoding}"
                elsif utf8.nil? then "cannot be read as UTF-8"
                elsif utf8.include?("\0") then "has a NUL byte"
                elsif utf8.bytesize > max then "is longer than #{max} bytes"
                elsif !empty && utf8.empty? then "is empty"
                end
      raise arg_error(what, "#{expected} (this one #{problem})", value) if problem

      utf8
    end

    # A valid `value` as UTF-8 (the same String when it is already), or nil: converted from its
    # encoding, or else (binary, the C locale's US-ASCII) its bytes when they are UTF-8.
    def utf8(value)
      return value if value.encoding == Encoding::UTF_8 || (value.ascii_only? && value.encoding.ascii_compatible?)

      begin
        value.encode(Encoding::UTF_8)
      rescue EncodingError
        bytes = value.b.force_encoding(Encoding::UTF_8)
        bytes.valid_encoding? ? bytes : nil
      end
    end
    SYMBOL_TO_S = Symbol.instance_method(:to_s)

    # A path: a String or an object with #to_path (a Pathname).
    def path(what, value, expected: "a path (a String or a Pathname)")
      if !(String === value) && !(Symbol === value) && responds?(value, :to_path)
        value = value.to_path
      end
      text(what, value, expected: expected, empty: false)
    end

    # Whether `value` has a public method `name`, asked without calling anything of `value`'s.
    def responds?(value, name)
      Kernel.instance_method(:respond_to?).bind_call(value, name)
    rescue Exception # rubocop:disable Lint/RescueException
      false
    end
  end
end
