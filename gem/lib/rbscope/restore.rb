# frozen_string_literal: true

require_relative "args"
require_relative "magic_roots"
require "json"
require "set"
require_relative "version"
require_relative "restored"
require_relative "frame_scope"
require_relative "class_state"

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

    # What `snapshot` shows in the console. `cut_values` lists the values a capture limit cut
    # (Restored::CutValue: where, value, reason); `class_states` the class-level state of the
    # classes the frames used (ClassState), which `class_state(Cfg)` finds by class.
    Info = Struct.new(:id, :exception_class, :message, :causes, :context, :frame, :cut_values,
                      :class_states, keyword_init: true) do
      def class_state(klass = nil) = Restore.find_class_state(class_states, klass)
    end

    CONSTANT_PATH = /\A(?:::)?[A-Z]\w*(?:::[A-Z]\w*)*\z/.freeze

    EXTEND = Module.instance_method(:extend_object)
    FROZEN = Kernel.instance_method(:frozen?)
    DATA = defined?(::Data) && ::Data.respond_to?(:define) ? ::Data : nil
    DATA_INIT = DATA&.instance_method(:initialize)

    attr_reader :frames, :info, :cut_values, :class_states
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

    # `data` is the native extension's array form of a snapshot (rbscope-agent-core's
    # restore_data.rs):
    #   [format_version, id, [class, message, causes], frames, objects, context_json, singletons]
    #   cause  = [class, message, frames]
    #   frame  = [label, method, path, lineno, self, [name, value, ...], first_lineno, lines]
    #   object = [kind, class, frozen, [ivar, value, ...], *kind_specific]
    #   value  = nil, true, false, Integer, Float, Symbol, [ref], [:redacted, why], [:cut, why]
    #   singleton = [object_index, [extended_module, ...], [singleton_method_name, ...]]
    #   class = [class_path, [var_name, value, ...], vars_left_out]   (format 3)
    # kind_specific (items after those a format 1 reader knew may be missing):
    #   string [text, original_len]; array, set [items, original_len];
    #   hash [[k, v, ...], [default] or nil, compare_by_identity, original_len, default_proc];
    #   module [name or nil, is_class, anonymous_path, superclass];
    #   method [owner, name, arity, unbound, location, receiver]; proc [lambda, arity, location]
    def initialize(data)
      version, id, exc, frames, objects, context, singletons, classes = data
      raise "rbscope: snapshot format #{version} is newer than this rbscope; upgrade the gem" if version.to_i > 3

      @objects = objects
      Restored::StandIn.define(objects)
      @built = Array.new(objects.size)
      @deferred = {}
      @pending = [] # [hash or set, index, items, step] with keys that are objects: filled last
      @cuts = [] # [owner, slot, value, reason], made into @cut_values once all is built
      @anonymous = {}
      objects.each_with_index { |o, i| @built[i] = shell(o, i) }
      adopt_anonymous_instances unless @anonymous.empty?
      all_frames = frames + exc[2].flat_map { |c| c[2] }
      @all_frames = all_frames
      @frames = all_frames.each_with_index.map { |f, i| build_frame(f, i) }
      objects.each_with_index { |o, i| fill(@built[i], o, i) unless @deferred.key?(i) }
      singletons&.each { |i, modules, names| singleton(i, modules, names) }
      @classes = classes || []
      @class_states = @classes.map { |path, vars, left_out| class_state_of(path, vars, left_out) }
      rehash
      @cut_values = @cuts.empty? ? [] : cut_list
      objects.each_with_index do |o, i|
        @built[i].freeze if o[2] && !@deferred.key?(i) && freezable?(@built[i])
      end
      @info = Info.new(id: id, exception_class: exc[0], message: exc[1],
                       causes: exc[2].map { |c| "#{c[0]}: #{c[1]}" },
                       context: JSON.parse(context), frame: nil, cut_values: @cut_values,
                       class_states: @class_states)
      @current = 0
    end

    # The class-level state captured for `klass` (a Module, or its path as a String) at the
    # failure; with no argument, all of it (one ClassState per class).
    def class_state(klass = nil) = Restore.find_class_state(@class_states, klass)

    def self.find_class_state(states, klass)
      return states if klass.nil?

      path = Module === klass ? klass.name : klass
      unless path.is_a?(String)
        raise ArgumentError, "rbscope: class_state takes a class or module, or its name as a String " \
                             "(got #{klass.class})"
      end

      states.find { |c| c.class_path == path } or
        raise ArgumentError, "rbscope: no class-level state was captured for #{path}; captured: " \
                             "#{states.empty? ? 'none' : states.map(&:class_path).join(', ')}"
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

    # The threads of the take this snapshot belongs to (snapshots `rbscope snapshot -p --all`
    # took together; the take is recorded in the context, rbscope_snapshot::take), one line
    # each with its snapshot's id. A restore is one process: another thread's snapshot opens
    # in a new one, with the command printed.
    def take_list
      extra = @info.context["extra"] || {}
      threads = begin
        JSON.parse(extra["take_threads"].to_s)
      rescue JSON::ParserError
        nil
      end
      return "snapshot #{@info.id} was taken alone (only `rbscope snapshot -p` with --all or several --thread takes threads together)" unless threads.is_a?(Array) && extra["take"]

      lines = threads.map do |t|
        name = t["name"] || (t["main"] ? "main" : "(unnamed)")
        name += " (tid #{t['tid']})" if t["tid"]
        this = t["id"] == @info.id
        format("%s%-30s %s%s", this ? "=>" : "  ", name, t["id"], this ? "" : "  rbscope restore #{t['id']}")
      end
      "take #{extra['take']} (another thread's snapshot opens in a new restore: exit, then run its command)\n#{lines.join("\n")}"
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

    def build_frame(f, i)
      label, method_name, path, lineno, self_value, locals, first, lines = f
      at = "frame #{i}"
      Frame.new(index: i, label: label, method_name: method_name, path: path, lineno: lineno,
                self_object: value(self_value, at, "self"),
                locals: locals.each_slice(2).to_h { |name, v| [name.to_sym, value(v, at, name)] },
                source: first && { "first_lineno" => first, "lines" => lines })
    end

    # The restored value of a stored `v`, held by `owner` (an object index, or a frame's
    # "frame N") in `slot` (a local, "@ivar", an index...), so that a cut value can say where
    # it was.
    def value(v, owner = nil, slot = nil)
      return v unless v.is_a?(Array)

      case v.size
      when 1 then object_at(v[0])
      when 2
        if v[0] == :redacted
          Restored::Redacted.new(v[1])
        else
          cut = Restored::Cut.new(v[1])
          @cuts << [owner, slot, cut, v[1]] if owner
          cut
        end
      else Restored::Cut.new("unknown value")
      end
    end

    # Where each object is first reached from, breadth first from the frames (as the capture
    # walked): @owner (an object index or "frame N") and @slot. Only asked for when something
    # was cut.
    def locate
      @owner = Array.new(@objects.size)
      @slot = Array.new(@objects.size)
      queue = []
      @all_frames.each_with_index do |f, fi|
        at = "frame #{fi}"
        reach(f[4], at, "self", queue)
        f[5].each_slice(2) { |name, v| reach(v, at, name, queue) }
      end
      @classes.each { |path, vars, _| vars.each_slice(2) { |name, v| reach(v, "class #{path}", name, queue) } }
      queue.each { |i| reach_children(i, queue) } # the queue grows as it is read
    end

    def reach_children(i, queue)
      kind, _class_name, _frozen, ivars, *data = @objects[i]
      case kind
      when :array, :set then data[0].each_with_index { |v, n| reach(v, i, n, queue) }
      when :hash
        data[0].each_slice(2).with_index do |(k, v), n|
          reach(k, i, "key", queue)
          reach(v, i, n, queue)
        end
        reach(data[1][0], i, "default", queue) if data[1]
        reach(data[4], i, "default_proc", queue)
      when :struct then data[0].each_slice(2) { |name, v| reach(v, i, name, queue) }
      when :range, :rational, :complex
        reach(data[0], i, "begin", queue)
        reach(data[1], i, "end", queue)
      when :method then reach(data[5], i, "receiver", queue)
      end
      ivars.each_slice(2) { |name, v| reach(v, i, name, queue) }
    end

    def reach(v, owner, slot, queue)
      return unless v.is_a?(Array) && v.size == 1 && (i = v[0]).is_a?(Integer) && i < @objects.size
      return if @owner[i]

      @owner[i] = owner
      @slot[i] = slot
      queue << i
    end

    # `frame 0: order.@lines[3]`: the path from a frame to a value, by the first reference seen.
    def where(owner, slot)
      parts = [slot_text(slot, owner)]
      seen = 0
      while owner.is_a?(Integer) && seen < 64
        up = @owner[owner]
        break unless up

        parts.unshift(slot_text(@slot[owner], up))
        owner = up
        seen += 1
      end
      return "#{owner}: #{parts.join.delete_prefix('.')}" if owner.is_a?(String)

      "#{object_text(owner)}#{parts.join}"
    end

    def object_text(i) = "#<#{@objects.dig(i, 1)} (object #{i})>"

    # A slot of object `owner`: an index (of an array item, or of a hash entry, shown by its
    # key), or a name.
    def slot_text(slot, owner)
      case slot
      when Integer
        return "[#{slot}]" unless owner.is_a?(Integer) && @objects.dig(owner, 0) == :hash

        "[#{key_text(@objects.dig(owner, 4, slot * 2))}]"
      when nil then ""
      else ".#{slot}"
      end
    end

    def key_text(stored)
      value(stored).inspect[0, 40]
    rescue StandardError
      "?"
    end

    def object_at(i)
      if @deferred.key?(i)
        @deferred.delete(i)
        @built[i] = immutable(@objects[i], i)
      end
      @built[i]
    end

    # Pass 1: an empty object of the right class for each stored object, so that references
    # (cycles included) can point at it. Immutable values are built on first use instead.
    def shell(o, i)
      kind, class_name, frozen, ivars, *data = o
      case kind
      when :string
        original = data[1]
        if original.is_a?(Integer) && original > data[0].bytesize
          s = subclass_instance(class_name, String) { kept_text(data[0]) }
          truncated(s, original, s.bytesize, "bytes", i)
        else
          s = subclass_instance(class_name, String) { data[0].dup }
        end
        # A frozen string is frozen at once, so a hash keeps it as its key (an unfrozen key
        # would be copied).
        s.freeze if frozen && ivars.empty? && !s.frozen?
        s
      when :array then subclass_instance(class_name, Array) { [] }
      when :hash
        h = subclass_instance(class_name, Hash) { {} }
        data[2] ? h.compare_by_identity : h
      when :set then Set.new
      when :struct
        klass = const(class_name)
        klass.is_a?(Class) && (klass < Struct || (DATA && klass < DATA)) ? klass.allocate : Restored::Missing.new(class_name)
      when :object then allocate(class_name)
      when :exception
        klass = const(class_name)
        e = klass.is_a?(Class) && klass <= Exception ? klass.allocate : StandardError.allocate
        Exception.instance_method(:initialize).bind_call(e, data[0])
        e
      when :module then a_module(class_name, data)
      when :magic then const(data[0]) || Rbscope.magic_root_for(data[0]) || Restored::Missing.new(data[0])
      when :proc
        Restored::Callable.new(class_name, "(#{data[0] ? 'lambda' : 'proc'})", data[1], data[2], lambda: data[0])
      when :method
        # The receiver (stored from format 2) is set in pass 2: it may not be built yet.
        Restored::Callable.new(class_name, "#{data[0]}##{data[1]}", data[2], data[4],
                               name: data[1].to_s.to_sym, owner: const(data[0]) || data[0])
      when :opaque then Restored::Opaque.new(class_name, data[0])
      else
        @deferred[i] = true
        nil
      end
    end

    # A named class or module is the live constant; an anonymous one (or one not loaded here)
    # a stand-in.
    def a_module(class_name, data)
      name, is_class, path, superclass = data
      found = const(name)
      return found if found.is_a?(Module)

      is_class = class_name.to_s.end_with?("Class") if is_class.nil?
      return Restored::Missing.new(name) if name

      mod = begin
        Restored::Anonymous.build(is_class, path, superclass && const(superclass))
      rescue TypeError
        Restored::Anonymous.build(is_class, path, nil)
      end
      @anonymous[path] = mod if path
      mod
    end

    # A cut string's text, without the part of a character the cut left at its end.
    def kept_text(text)
      return text.dup if text.valid_encoding?

      (1..3).each do |n|
        shorter = text.byteslice(0, text.bytesize - n)
        return shorter if shorter.valid_encoding?
      end
      text.dup
    end

    # Marks a string, array, hash or set that a limit cut short.
    def truncated(obj, original, kept, unit, i)
      return unless original.is_a?(Integer) && original > kept

      note = "kept #{kept} of #{original} #{unit}"
      Restored::Truncated.mark(obj, note)
      @cuts << [i, nil, obj, note]
    rescue TypeError, FrozenError
      nil
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

    # Instances of an anonymous class whose stand-in was made after their own shell.
    def adopt_anonymous_instances
      @objects.each_with_index do |o, i|
        klass = o[0] == :object && Restored::Missing === @built[i] && @anonymous[o[1]]
        @built[i] = klass.allocate if klass
      end
    end

    def allocate(class_name)
      klass = const(class_name) || @anonymous[class_name]
      return Restored::Missing.new(class_name) unless klass.is_a?(Class)

      klass.allocate
    rescue TypeError, NoMethodError
      Restored::Missing.new(class_name)
    end

    def immutable(o, i)
      kind, _class_name, _frozen, _ivars, *data = o
      case kind
      when :range then Range.new(value(data[0], i, "begin"), value(data[1], i, "end"), data[2])
      when :regexp then Regexp.new(data[0], data[1])
      when :rational then Rational(value(data[0], i, "numerator"), value(data[1], i, "denominator"))
      when :complex then Complex(value(data[0], i, "real"), value(data[1], i, "imaginary"))
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
    def fill(obj, o, i)
      kind, _class_name, _frozen, ivars, *data = o
      case kind
      when :array
        data[0].each_with_index { |v, n| obj << value(v, i, n) }
        truncated(obj, data[1], data[0].size, "items", i)
      when :set
        # Members that are objects are added once everything is filled in: empty, [1, 2] and
        # [3, 4] would be one member.
        composite?(data[0], 1) ? @pending << [obj, i, data[0], 1] : insert(obj, i, data[0], 1)
        truncated(obj, data[1], data[0].size, "items", i)
      when :hash
        composite?(data[0], 2) ? @pending << [obj, i, data[0], 2] : insert(obj, i, data[0], 2)
        obj.default = value(data[1][0], i, "default") if data[1]
        default_proc(obj, value(data[4], i, "default_proc")) unless data[4].nil?
        truncated(obj, data[3], data[0].size / 2, "entries", i)
      when :struct
        # A Data (Ruby 3.2+) is given its members by Data#initialize itself (the class's own
        # initialize is not run), which freezes it.
        return data_init(obj, data[0], i) if DATA && DATA === obj

        data[0].each_slice(2).with_index do |(name, v), n|
          if Struct === obj
            # The class here may have fewer members than the one that was captured.
            obj[n] = value(v, i, name) if n < obj.size
          else
            obj.__ivars__[name] = value(v, i, name)
          end
        end
      when :method
        obj.instance_variable_set(:@receiver, value(data[5], i, "receiver")) if data.size > 5
      end
      ivars.each_slice(2) do |name, stored|
        v = value(stored, i, name)
        # A stand-in keeps them for its inspect, and also as real ivars so that `@cart` works in
        # a console whose self is one.
        obj.__ivars__[name] = v if Restored::Missing === obj
        next if FROZEN.bind_call(obj)

        begin
          Kernel.instance_method(:instance_variable_set).bind_call(obj, name, v)
        rescue NameError
          nil # not a name Ruby allows (a damaged or hand-made snapshot): left out
        end
      end
    rescue FrozenError, TypeError
      nil
    end

    def data_init(obj, members, i)
      kw = members.each_slice(2).to_h { |name, v| [name.to_sym, value(v, i, name)] }
      DATA_INIT.bind_call(obj, **kw)
    rescue ArgumentError, TypeError, FrozenError
      nil # the class here has other members than the one that was captured
    end

    def default_proc(hash, callable)
      hash.default_proc = Restored::Callable.default_proc(callable)
    rescue TypeError, FrozenError
      nil
    end

    # Objects extended with modules, and their singleton methods (format 2): each module is
    # extended again when it is loaded here (Module#extend_object of Ruby itself: the module's
    # own hooks do not run), or a stand-in module named after it; each singleton method is a
    # stand-in that raises (its code is never stored).
    def singleton(i, modules, names)
      obj = @built[i]
      return if obj.nil? || Module === obj || FROZEN.bind_call(obj)

      modules.reverse_each do |name|
        mod = const(name)
        mod = Restored::Anonymous.build(false, "#{name} (not loaded here)", nil) unless mod.instance_of?(Module)
        EXTEND.bind_call(mod, obj)
      end
      names.each do |name|
        # Never one Ruby calls by itself (to_str, to_ary ...), nor one the object has.
        next if Restored::Marker::IMPLICIT.include?(name.to_sym) || obj.respond_to?(name, true)

        obj.define_singleton_method(name) do |*|
          ::Kernel.raise NotImplementedError,
                         "#{name} was a singleton method of this object: its code was not stored"
        end
      end
    rescue TypeError, NameError, ArgumentError, FrozenError
      nil
    end

    # The members of a set (`step` 1) or the entries of a hash (`step` 2).
    def insert(obj, i, items, step)
      n = 0
      while n < items.size
        if step == 1
          obj << value(items[n], i, n)
        else
          obj[value(items[n], i, "key")] = value(items[n + 1], i, n / 2)
        end
        n += step
      end
    end

    # Pass 3: hashes and sets whose keys are objects (arrays, structs, objects with their own
    # #hash), filled in now that their keys are (the deepest
    # first: objects are stored breadth first), then rehashed: a key can still change after it
    # was inserted (a cycle through it). compare_by_identity is kept.
    def rehash
      @pending.reverse_each { |obj, i, items, step| insert(obj, i, items, step) }
      @pending.each do |obj, *|
        if Hash === obj
          obj.rehash
        elsif obj.respond_to?(:reset)
          obj.reset
        end
      rescue StandardError
        nil # a key whose #hash fails on restored state: left where it is
      end
    end

    # Whether some key or member (every `step`-th stored item) is an object filled in pass 2
    # (not an immediate value, nor a string, which is complete from pass 1).
    def composite?(items, step)
      n = 0
      while n < items.size
        v = items[n]
        return true if v.is_a?(Array) && v.size == 1 && @objects.dig(v[0], 0) != :string

        n += step
      end
      false
    end

    # What a limit cut, each with the path it is reached by (computed now that keys are
    # filled in).
    def cut_list
      locate
      @cuts.map do |owner, slot, value, reason|
        text = if slot.nil? && owner.is_a?(Integer) # a shortened object: where it is itself
                 up = @owner[owner]
                 up ? where(up, @slot[owner]) : object_text(owner)
               else
                 where(owner, slot)
               end
        Restored::CutValue.new(text, value, reason)
      end
    end

    def class_state_of(path, vars, left_out)
      values = vars.each_slice(2).to_h { |name, v| [name, value(v, "class #{path}", name)] }
      ClassState.new(path, values, left_out, const(path))
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
