# frozen_string_literal: true

require_relative "args"
require_relative "magic_roots"
require "json"
require "set"
require_relative "version"
require_relative "restored"
require_relative "frame_scope"

require_relative "native_loader"
if (problem = Rbscope::NativeLoader.load)
  raise LoadError, "rbscope: restore needs the native agent: #{problem}"
end

module Rbscope
  # Rebuilding a stored snapshot as Ruby objects, and a console "back in the frame".
  #
  # Safety: nothing stored in a snapshot is evaluated. Classes are found by constant lookup
  # only (a name that is not a plain constant path gives a stand-in object; a path not defined
  # here, a stand-in class made with Class.new and set under that path: Restored::StandIn);
  # objects are allocated without running `initialize`; procs, methods and opaque values come
  # back as stand-ins. The native side refuses a snapshot that is not signed with the store's
  # key unless `trust: true`.
  class Restore
    Frame = Struct.new(:index, :label, :method_name, :path, :lineno, :self_object, :locals,
                       :source, keyword_init: true) do
      def to_s = "#{label}  #{path}:#{lineno}"
    end

    # What `snapshot` shows in the console.
    Info = Struct.new(:id, :exception_class, :message, :causes, :context, :frame,
                      keyword_init: true)

    CONSTANT_PATH = /\A(?:::)?[A-Z]\w*(?:::[A-Z]\w*)*\z/.freeze

    attr_reader :frames, :info
    attr_accessor :current

    # Loads snapshot `id` from `store` (default: RBSCOPE_STORE or the per-user store).
    # `id` is a snapshot id or a prefix of one (a String); `store` nil, a path or a postgres://
    # URL; `trust` true or false.
    def self.load(id, store: nil, trust: false)
      id = Args.text("Rbscope.restore(id)", id, expected: "a snapshot id (a String)", symbol: true, max: 100,
                                                empty: false)
      unless NilClass === store
        store = Args.path("Rbscope.restore(store:)", store,
                          expected: "nil, a path (a String or a Pathname) or a postgres:// URL")
      end
      new(Rbscope::Native.snapshot_data(store, id, Args.flag("Rbscope.restore(trust:)", trust)))
    end

    # `data` is the native extension's array form of a snapshot (restore_data.rs):
    #   [format_version, id, [class, message, causes], frames, objects, context_json]
    #   cause  = [class, message, frames]
    #   frame  = [label, method, path, lineno, self, [name, value, ...], first_lineno, lines]
    #   object = [kind, class, frozen, [ivar, value, ...], *kind_specific]
    #   value  = nil, true, false, Integer, Float, Symbol, [ref], [:redacted, why], [:cut, why]
    def initialize(data)
      version, id, exc, frames, objects, context = data
      raise "rbscope: snapshot format #{version} is newer than this rbscope; upgrade the gem" if version.to_i > 1

      @objects = objects
      Restored::StandIn.define(objects)
      @built = Array.new(objects.size)
      @deferred = {}
      objects.each_with_index { |o, i| @built[i] = shell(o, i) }
      objects.each_with_index { |o, i| fill(@built[i], o) unless @deferred.key?(i) }
      objects.each_with_index do |o, i|
        @built[i].freeze if o[2] && !@deferred.key?(i) && freezable?(@built[i])
      end
      all_frames = frames + exc[2].flat_map { |c| c[2] }
      @frames = all_frames.each_with_index.map do |f, i|
        label, method_name, path, lineno, self_value, locals, first, lines = f
        Frame.new(index: i, label: label, method_name: method_name, path: path, lineno: lineno,
                  self_object: value(self_value),
                  locals: locals.each_slice(2).to_h { |name, v| [name.to_sym, value(v)] },
                  source: first && { "first_lineno" => first, "lines" => lines })
      end
      @info = Info.new(id: id, exception_class: exc[0], message: exc[1],
                       causes: exc[2].map { |c| "#{c[0]}: #{c[1]}" },
                       context: JSON.parse(context), frame: nil)
      @current = 0
    end

    # A Binding whose self is the frame's self and whose locals are the frame's locals, in the
    # frame's lexical scope (its class and module nesting) and method (FrameScope).
    def binding_for(index)
      frame = @frames.fetch(index)
      nesting = FrameScope.nesting(frame.label, frame.self_object)
      b = FrameScope.binding_for(frame.self_object, nesting, frame.method_name, frame.path, frame.lineno)
      frame.locals.each do |name, v|
        b.local_variable_set(name, v)
      rescue NameError
        nil # not a name Ruby allows (a damaged or hand-made snapshot): left out
      end
      b
    end

    def frame_list
      @frames.map { |f| format("%s%2d %s", f.index == @current ? "=>" : "  ", f.index, f) }.join("\n")
    end

    # Opens IRB in frame `index`; `frame N`, `up`, `down` switch frames, `exit` leaves.
    def console(index = 0)
      require_relative "console"
      Console.run(self, index)
    end

    private

    def const(path)
      return nil unless path.is_a?(String) && CONSTANT_PATH.match?(path)
      return nil unless Object.const_defined?(path)

      Object.const_get(path)
    rescue NameError, LoadError
      nil
    end

    def value(v)
      return v unless v.is_a?(Array)

      case v.size
      when 1 then object_at(v[0])
      when 2 then v[0] == :redacted ? Restored::Redacted.new(v[1]) : Restored::Cut.new(v[1])
      else Restored::Cut.new("unknown value")
      end
    end

    def object_at(i)
      if @deferred.key?(i)
        @deferred.delete(i)
        @built[i] = immutable(@objects[i])
      end
      @built[i]
    end

    # Pass 1: an empty object of the right class for each stored object, so that references
    # (cycles included) can point at it. Immutable values are built on first use instead.
    def shell(o, i)
      kind, class_name, _frozen, _ivars, *data = o
      case kind
      when :string then subclass_instance(class_name, String) { data[0].dup }
      when :array then subclass_instance(class_name, Array) { [] }
      when :hash
        h = subclass_instance(class_name, Hash) { {} }
        data[2] ? h.compare_by_identity : h
      when :set then Set.new
      when :struct
        klass = const(class_name)
        klass.is_a?(Class) && klass < Struct ? klass.allocate : Restored::Missing.new(class_name)
      when :object then allocate(class_name)
      when :exception
        klass = const(class_name)
        e = klass.is_a?(Class) && klass <= Exception ? klass.allocate : StandardError.allocate
        Exception.instance_method(:initialize).bind_call(e, data[0])
        e
      when :module then const(data[0]) || Restored::Missing.new(data[0] || "(anonymous #{class_name.downcase})")
      when :magic then const(data[0]) || Rbscope.magic_root_for(data[0]) || Restored::Missing.new(data[0])
      when :proc then Restored::Callable.new(class_name, "(#{data[0] ? 'lambda' : 'proc'})", data[1], data[2])
      when :method then Restored::Callable.new(class_name, "#{data[0]}##{data[1]}", data[2], data[4])
      when :opaque then Restored::Opaque.new(class_name, data[0])
      else
        @deferred[i] = true
        nil
      end
    end

    # An empty instance of `class_name` when it is a subclass of `base` loaded here (such as
    # HashWithIndifferentAccess), else the base object from the block.
    def subclass_instance(class_name, base)
      plain = yield
      return plain if class_name == base.name

      klass = const(class_name)
      return plain unless klass.is_a?(Class) && klass < base

      obj = klass.allocate
      base == String ? obj.replace(plain) : obj
    rescue TypeError, NoMethodError
      plain
    end

    def allocate(class_name)
      klass = const(class_name)
      return Restored::Missing.new(class_name) unless klass.is_a?(Class)

      klass.allocate
    rescue TypeError, NoMethodError
      Restored::Missing.new(class_name)
    end

    def immutable(o)
      kind, _class_name, _frozen, _ivars, *data = o
      case kind
      when :range then Range.new(value(data[0]), value(data[1]), data[2])
      when :regexp then Regexp.new(data[0], data[1])
      when :rational then Rational(value(data[0]), value(data[1]))
      when :complex then Complex(value(data[0]), value(data[1]))
      when :time
        t = Time.at(data[0], data[1], :nsec)
        data[3] ? t.utc : t.getlocal(data[2])
      when :date
        require "date"
        Date.iso8601(data[0])
      when :datetime
        require "date"
        DateTime.iso8601(data[0])
      when :bigdecimal
        require "bigdecimal"
        BigDecimal(data[0])
      else Restored::Cut.new("unknown kind #{kind}")
      end
    rescue ArgumentError, TypeError, RegexpError, LoadError
      Restored::Cut.new("unreadable #{kind}")
    end

    # Pass 2: contents and instance variables.
    def fill(obj, o)
      kind, _class_name, _frozen, ivars, *data = o
      case kind
      when :array, :set then data[0].each { |v| obj << value(v) }
      when :hash
        data[0].each_slice(2) { |k, v| obj[value(k)] = value(v) }
        obj.default = value(data[1][0]) if data[1]
      when :struct
        data[0].each_slice(2).with_index do |(name, v), i|
          if Struct === obj
            # The class here may have fewer members than the one that was captured.
            obj[i] = value(v) if i < obj.size
          else
            obj.__ivars__[name] = value(v)
          end
        end
      end
      ivars.each_slice(2) do |name, stored|
        v = value(stored)
        # A stand-in keeps them for its inspect, and also as real ivars so that `@cart` works in
        # a console whose self is one.
        obj.__ivars__[name] = v if Restored::Missing === obj
        next if Kernel.instance_method(:frozen?).bind_call(obj)

        begin
          Kernel.instance_method(:instance_variable_set).bind_call(obj, name, v)
        rescue NameError
          nil # not a name Ruby allows (a damaged or hand-made snapshot): left out
        end
      end
    rescue FrozenError, TypeError
      nil
    end

    def freezable?(obj)
      !(Module === obj || Restored::Missing === obj)
    end
  end

  class << self
    # Rebuilds snapshot `id` and opens a console in frame `frame` (from inside any Ruby
    # process, e.g. `rails console`, where the app's classes are loaded). With
    # `console: false`, returns the Restore without opening one.
    # `frame` is an Integer (an index of the snapshot's frames), `console` true or false.
    def restore(id, frame: 0, trust: false, store: nil, console: true)
      Args.integer("Rbscope.restore(frame:)", frame, 0..1_000_000)
      Args.flag("Rbscope.restore(console:)", console)
      r = Restore.load(id, store: store, trust: trust)
      console ? r.console(frame) : r
    end
  end
end
