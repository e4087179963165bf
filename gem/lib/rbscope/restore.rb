# frozen_string_literal: true

require "json"
require "set"
require_relative "version"
require_relative "restored"

begin
  require "rbscope/rbscope_agent"
rescue LoadError => e
  raise LoadError, "rbscope: the native agent is not built (#{e.message})"
end

module Rbscope
  # Rebuilding a stored snapshot as Ruby objects, and a console "back in the frame".
  #
  # Safety: nothing stored in a snapshot is evaluated. Classes are found by constant lookup
  # only (a name that is not a plain constant path, or not defined here, gives a stand-in);
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

    # A method that returns a fresh binding (no locals) for whatever object it is bound to.
    BINDER = Module.new { def __rbscope_binding__ = binding }.instance_method(:__rbscope_binding__)

    attr_reader :frames, :info
    attr_accessor :current

    # Loads snapshot `id` from `store` (default: RBSCOPE_STORE or the per-user store).
    def self.load(id, store: nil, trust: false)
      doc = JSON.parse(Rbscope::Native.snapshot_json(store, id.to_s, trust ? true : false))
      new(doc)
    end

    def initialize(doc)
      if doc["format_version"].to_i > 1
        raise "rbscope: snapshot format #{doc['format_version']} is newer than this rbscope; upgrade the gem"
      end

      @objects = doc["objects"]
      @built = Array.new(@objects.size)
      @deferred = {}
      @objects.each_with_index { |o, i| @built[i] = shell(o, i) }
      @objects.each_with_index { |o, i| fill(@built[i], o) unless @deferred.key?(i) }
      @objects.each_with_index { |o, i| @built[i].freeze if o["frozen"] && !@deferred.key?(i) && freezable?(@built[i]) }
      all_frames = doc["frames"] + doc["exception"]["causes"].flat_map { |c| c["frames"] }
      @frames = all_frames.each_with_index.map do |f, i|
        Frame.new(index: i, label: f["label"], method_name: f["method"], path: f["path"],
                  lineno: f["lineno"], self_object: value(f["self"]),
                  locals: f["locals"].to_h { |l| [l["name"].to_sym, value(l["value"])] },
                  source: f["source"])
      end
      exc = doc["exception"]
      @info = Info.new(id: doc["id"], exception_class: exc["class"], message: exc["message"],
                       causes: exc["causes"].map { |c| "#{c['class']}: #{c['message']}" },
                       context: doc["context"], frame: nil)
      @current = 0
    end

    # A Binding whose self is the frame's self and whose locals are the frame's locals.
    def binding_for(index)
      frame = @frames.fetch(index)
      b = BINDER.bind_call(frame.self_object)
      frame.locals.each { |name, v| b.local_variable_set(name, v) }
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
      case v["type"]
      when "nil" then nil
      when "true" then true
      when "false" then false
      when "integer" then v["value"].is_a?(String) ? Integer(v["value"], 10) : v["value"]
      when "float" then v["value"].is_a?(String) ? Float(v["value"].sub("inf", "Infinity")) : v["value"].to_f
      when "symbol" then v["value"].to_sym
      when "ref" then object_at(v["id"])
      when "redacted" then Restored::Redacted.new(v["reason"])
      when "cut" then Restored::Cut.new(v["reason"])
      else Restored::Cut.new("unknown value type #{v['type']}")
      end
    rescue ArgumentError, TypeError
      Restored::Cut.new("unreadable #{v['type']}")
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
      case o["kind"]
      when "string"
        s = o["base64"] ? o["base64"].unpack1("m0") : o["value"].dup
        enc = Encoding.find(o["encoding"]) rescue Encoding::BINARY # rubocop:disable Style/RescueModifier
        s.force_encoding(enc)
      when "array" then []
      when "hash" then o["compare_by_identity"] ? {}.compare_by_identity : {}
      when "set" then Set.new
      when "struct"
        klass = const(o["class"])
        klass.is_a?(Class) && klass < Struct ? klass.allocate : Restored::Missing.new(o["class"])
      when "object" then allocate(o["class"])
      when "exception"
        klass = const(o["class"])
        e = klass.is_a?(Class) && klass <= Exception ? klass.allocate : StandardError.allocate
        Exception.instance_method(:initialize).bind_call(e, o["message"])
        e
      when "module" then const(o["name"]) || Restored::Missing.new(o["name"] || "(anonymous module)")
      when "magic" then const(o["path"]) || Restored::Missing.new(o["path"])
      when "proc", "method" then Restored::Callable.new(o)
      when "opaque" then Restored::Opaque.new(o["class"], o["preview"])
      else
        @deferred[i] = true
        nil
      end
    end

    def allocate(class_name)
      klass = const(class_name)
      return Restored::Missing.new(class_name) unless klass.is_a?(Class)

      klass.allocate
    rescue TypeError, NoMethodError
      Restored::Missing.new(class_name)
    end

    def immutable(o)
      case o["kind"]
      when "range" then Range.new(value(o["begin"]), value(o["end"]), o["exclusive"])
      when "regexp" then Regexp.new(o["source"], o["options"])
      when "rational" then Rational(value(o["numerator"]), value(o["denominator"]))
      when "complex" then Complex(value(o["real"]), value(o["imaginary"]))
      when "time"
        t = Time.at(o["seconds"], o["nanoseconds"], :nsec)
        o["utc"] ? t.utc : t.getlocal(o["utc_offset"])
      when "date"
        require "date"
        Date.iso8601(o["iso8601"])
      when "datetime"
        require "date"
        DateTime.iso8601(o["iso8601"])
      when "bigdecimal"
        require "bigdecimal"
        BigDecimal(o["value"])
      else Restored::Cut.new("unknown kind #{o['kind']}")
      end
    rescue ArgumentError, TypeError, RegexpError, LoadError
      Restored::Cut.new("unreadable #{o['kind']}")
    end

    # Pass 2: contents and instance variables.
    def fill(obj, o)
      case o["kind"]
      when "array" then o["items"].each { |v| obj << value(v) }
      when "set" then o["items"].each { |v| obj << value(v) }
      when "hash"
        o["entries"].each { |e| obj[value(e["key"])] = value(e["value"]) }
        obj.default = value(o["default"]) if o["default"]
      when "struct"
        o["members"].each_with_index do |m, i|
          Struct === obj ? obj[i] = value(m["value"]) : obj.__ivars__[m["name"]] = value(m["value"])
        end
      end
      o["ivars"].each do |iv|
        v = value(iv["value"])
        if Restored::Missing === obj
          obj.__ivars__[iv["name"]] = v
        elsif !Kernel.instance_method(:frozen?).bind_call(obj)
          Kernel.instance_method(:instance_variable_set).bind_call(obj, iv["name"], v)
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
    def restore(id, frame: 0, trust: false, store: nil, console: true)
      r = Restore.load(id, store: store, trust: trust)
      console ? r.console(frame) : r
    end
  end
end
