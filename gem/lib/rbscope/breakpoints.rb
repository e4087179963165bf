# frozen_string_literal: true

module Rbscope
  # The Ruby half of `rbscope break -p PID FILE:LINE`: non-breaking breakpoints. The agent's Ruby
  # thread calls `set` and `remove`; the hooks run on app threads.
  #
  # A breakpoint hooks one line of one instruction sequence: a TracePoint(:line) enabled with
  # `target:` (the innermost method or block iseq that has a line event on that line) and
  # `target_line:`, so no other code is hooked. When the line runs, the hook stores a live
  # snapshot of its thread (kind "breakpoint") and posts the snapshot id to the agent
  # (`Native.break_post`), which sends it to the client. After `max` hits the hook turns itself
  # off, inside the app (a `max` of 0: no limit, for logpoints). A logpoint (`rbscope log`) is a
  # breakpoint whose hit reads its values and hands them to the agent (`Native.log_post`, which
  # renders them without calling the app's `inspect`) instead of storing a snapshot. With
  # `every`, the agent lets one hit through per period (`Native.break_due`): the others return
  # at once, counted; a logpoint whose client has not taken its last 1,000 hits drops the hit
  # there too, before reading anything. A line is checked against the file compiled again (never run): a line
  # without code is refused with the nearest lines that have code, top-level code (not in a
  # method or a block inside one) is refused, and a line in a method not loaded yet waits.
  #
  # Loaded iseqs are found from the methods of loaded modules whose source file is the file
  # (`RubyVM::InstructionSequence.of` and their blocks through `each_child`). A file loaded
  # (or loaded again: `load`, a Rails reload) while a breakpoint is set in it is seen by a
  # :script_compiled TracePoint, which fires only when Ruby compiles a file and is on only while
  # a breakpoint is set: the hook moves to the new iseq (the one its methods will be defined
  # with) before the file's code runs.
  module Breakpoints
    class Refusal < StandardError; end

    # How a breakpoint's snapshot says who took it (the context's `reported_by`).
    HOW = "rbscope break"

    # What a condition (`--if`) is told when it reads an attribute the app did not allow.
    NOT_OPTED_IN = "is not read: attribute reads call the app's methods, which needs " \
                   "Rbscope.start(allow_eval: true)"
    IVAR_GET = Kernel.instance_method(:instance_variable_get)
    IVAR_DEFINED = Kernel.instance_method(:instance_variable_defined?)
    CLASS_OF = Kernel.instance_method(:class)

    Point = Struct.new(:id, :file, :path, :line, :max, :hits, :done, :tp, :lock, :paths, :reads,
                       :values, :gated, keyword_init: true)

    @points = {}
    @compiled = nil
    @paths = {}

    class << self
      # Sets breakpoint `id` at `file`:`line` for `max` hits. `root` is the app root (a
      # relative `file` is looked for there, then in the working directory). `paths`: the values
      # its condition reads, [text, "self"|"local"|"ivar", name, [method...]] each (none: no
      # condition); `reads`: whether a path's methods may be called; `values`: a logpoint's
      # values, as `paths` (none: a breakpoint); `every`: whether the agent spaces its hits.
      # Returns [true, path, hooked, waiting] (hooked: what is hooked, or "" while it waits;
      # waiting: why, or nil) or [false, message].
      def set(id, file, line, max, root, paths = [], reads = false, values = [], every = false)
        path = locate(file, root)
        chain = compiled_chain(file, path, line)
        point = Point.new(id: id, file: file, path: path, line: line, max: max, hits: 0,
                          done: false, lock: Mutex.new, paths: paths, reads: reads,
                          values: values, gated: every || !values.empty?)
        iseq = loaded_iseq(path, line)
        if iseq.nil? && chain.none? { |i| i.to_a[9] == :method }
          raise Refusal, "#{file}:#{line} is in a block outside any method (top-level code, or a " \
                         "define_method not run yet): a breakpoint can only hook a line in a method"
        end
        @points[id] = point
        watch_loads
        if iseq
          arm(point, iseq)
          [true, path, describe(iseq), nil]
        else
          method = chain.reverse.find { |i| i.to_a[9] == :method }
          [true, path, "", "#{file}:#{line} is in #{method.label}, which is not defined yet: " \
                           "waiting for #{File.basename(path)} to be loaded"]
        end
      rescue Refusal => e
        remove(id)
        [false, e.message]
      rescue Exception => e # rubocop:disable Lint/RescueException
        remove(id)
        [false, "#{e.class}: #{e.message}"]
      end

      # Removes breakpoint `id`'s hook (the client went away, its time is up, or it is done).
      def remove(id)
        point = @points.delete(id)
        point&.tp&.disable
        if @points.empty? && @compiled
          @compiled.disable
          @compiled = nil
          @paths.clear
        end
        nil
      end

      # Removes every breakpoint (`Rbscope.stop`; a forked child, where they have no client).
      def remove_all
        @points.keys.each { |id| remove(id) }
        nil
      end

      # Breakpoints set now (for tests and `rbscope eval`).
      def count = @points.size

      private

      # The file's absolute path (symlinks resolved), or a Refusal.
      def locate(file, root)
        tried = if File.absolute_path?(file)
                  [file]
                else
                  [root, Dir.pwd].compact.reject(&:empty?).uniq.map { |d| File.expand_path(file, d) }
                end
        found = tried.find { |f| File.file?(f) }
        raise Refusal, "#{file}: no such file (looked for #{tried.join(', ')})" unless found

        File.realpath(found)
      end

      # The iseqs, outermost first, of the file compiled again (not run) down to the innermost
      # one with a line event on `line`; a Refusal when the line has no code or is top-level.
      def compiled_chain(file, path, line)
        top = begin
          RubyVM::InstructionSequence.compile_file(path)
        rescue SyntaxError => e
          raise Refusal, "#{file} does not compile: #{e.message.lines.first&.strip}"
        end
        lines = []
        chain = nil
        walk(top, []) do |iseq, parents|
          here = line_events(iseq)
          lines.concat(here)
          chain = parents + [iseq] if here.include?(line) && (chain.nil? || parents.size >= chain.size)
        end
        raise Refusal, no_code(file, line, lines.uniq.sort) unless chain

        defined = []
        chain.last.each_child { |c| defined << c if c.first_lineno == line && c.to_a[9] == :method }
        if (method = defined.first)
          inside = []
          walk(method, []) { |i, _| inside.concat(line_events(i)) }
          inside = inside.uniq.sort
          where = inside.empty? ? "it has no lines of code" : "hook a line inside it (#{inside.first} to #{inside.last})"
          raise Refusal, "#{file}:#{line} defines #{method.label}: #{where}"
        end
        if chain.size == 1 || chain.drop(1).all? { |i| %i[class rescue ensure].include?(i.to_a[9]) }
          raise Refusal, "#{file}:#{line} is top-level code (not in a method or a block inside one), " \
                         "which runs once as the file loads: a breakpoint cannot hook it"
        end
        chain
      end

      def no_code(file, line, lines)
        before = lines.select { |l| l < line }.last
        after = lines.find { |l| l > line }
        near = [before, after].compact
        return "#{file} has no code to hook" if near.empty?

        "#{file}:#{line} has no code; the nearest line#{near.size > 1 ? 's' : ''} with code: " \
          "#{near.map { |l| "#{file}:#{l}" }.join(' and ')}"
      end

      def walk(iseq, parents, &block)
        yield iseq, parents
        inner = parents + [iseq]
        iseq.each_child { |c| walk(c, inner, &block) }
      end

      def line_events(iseq)
        iseq.trace_points.filter_map { |l, event| l if event == :line }
      end

      # The innermost iseq of a method now defined in `path` (or a block in one) with a line
      # event on `line`, or nil.
      def loaded_iseq(path, line)
        best = nil
        seen = {}.compare_by_identity
        ObjectSpace.each_object(Module) do |mod|
          (mod.instance_methods(false) + mod.private_instance_methods(false)).each do |name|
            um = mod.instance_method(name)
            loc = um.source_location
            next unless loc && same_file?(loc[0], path)

            iseq = RubyVM::InstructionSequence.of(um)
            next if iseq.nil? || seen[iseq]

            seen[iseq] = true
            found = innermost(iseq, line)
            best = found if found && (best.nil? || found[1] > best[1])
          rescue StandardError
            next
          end
        end
        best&.first
      end

      # [iseq, depth] of the innermost iseq under `iseq` with a line event on `line`.
      def innermost(iseq, line)
        found = nil
        walk(iseq, []) do |i, parents|
          next unless line_events(i).include?(line)

          found = [i, parents.size] if found.nil? || parents.size >= found[1]
        end
        found
      end

      def same_file?(loc, path)
        (@paths[loc] ||= begin
          File.realpath(File.expand_path(loc))
        rescue StandardError
          File.expand_path(loc)
        end) == path
      end

      def describe(iseq)
        "#{iseq.label} (#{File.basename(iseq.path)}:#{iseq.first_lineno})"
      end

      # Hooks `point`'s line in `iseq` (replacing its hook on an older iseq).
      def arm(point, iseq)
        tp = TracePoint.new(:line) { |t| hit(point, t) }
        point.lock.synchronize do
          return if point.done

          point.tp&.disable
          point.tp = tp
          tp.enable(target: iseq, target_line: point.line)
        end
      end

      # The line ran: a snapshot of this thread (or a logpoint's values), posted to the agent.
      # Never raises into the app.
      def hit(point, tp)
        return if point.done
        return if point.gated && !Native.break_due(point.id, false)

        # Thread#kill and Thread#raise (Timeout's) wait until the hit is done, as for a report
        # (Rbscope.__reading_this_thread): one arriving while the condition, the values or the
        # snapshot are read would be rescued below and lost.
        Rbscope.__reading_this_thread { hit_now(point, tp) }
      rescue Exception # rubocop:disable Lint/RescueException
        nil
      end

      def hit_now(point, tp)
        return unless holds?(point, tp)
        return if point.gated && !Native.break_due(point.id, true)

        n = nil
        point.lock.synchronize do
          return if point.done

          n = (point.hits += 1)
          if point.max.positive? && n >= point.max
            point.done = true
            tp.disable
          end
        end
        thread = Thread.current
        if point.values.empty?
          where = "#{point.file}:#{point.line}"
          context = Context.for_report([["breakpoint", where], ["hit", n.to_s]], thread)
          id = Native.snapshot(thread, context, HOW, ["breakpoint", "line #{where} ran"])
          alive = Native.break_post(point.id, "hit", id)
        else
          alive = Native.log_post(point.id, thread.native_thread_id, thread.name, logged(point, tp))
        end
        if point.done
          Native.break_post(point.id, "done", "#{n} hit#{n == 1 ? '' : 's'} (--max #{point.max})")
        elsif !alive
          # Its client is gone and the agent has not removed it yet: stop hooking now.
          point.lock.synchronize { point.done = true }
          tp.disable
        end
      rescue Exception # rubocop:disable Lint/RescueException
        nil
      end

      # Whether the breakpoint's condition holds here (true without one): the values it reads,
      # decided by the agent (rbscope-trace's condition language; nothing is evaluated as Ruby).
      # False once the breakpoint is no longer set (its client went away, even without a
      # condition: the agent removes its mailbox before its hook, so a hit in between would
      # otherwise store a snapshot nobody asked for).
      def holds?(point, tp)
        return Native.break_test(point.id, [], []) if point.paths.empty?

        frame = [nil]
        kinds = []
        payloads = []
        point.paths.each do |_text, root, name, chain|
          kind, payload = read(point, tp, frame, root, name, chain)
          kinds << kind
          payloads << payload
        end
        Native.break_test(point.id, kinds, payloads)
      end

      # A logpoint's values at this hit: [path, true, value] or [path, false, why] each.
      def logged(point, tp)
        frame = [nil]
        point.values.map do |text, root, name, chain|
          [text, *fetch(point, tp, frame, root, name, chain)]
        end
      end

      # One value a condition reads, as [kind, text] (`frame` keeps the line's binding).
      def read(point, tp, frame, root, name, chain)
        ok, value = fetch(point, tp, frame, root, name, chain)
        ok ? encode(value) : ["unavailable", value]
      end

      # One value at the line: [true, value] or [false, why it is not read].
      def fetch(point, tp, frame, root, name, chain)
        value = case root
                when "self" then tp.self
                when "ivar"
                  obj = tp.self
                  IVAR_DEFINED.bind_call(obj, name) ? IVAR_GET.bind_call(obj, name) : nil
                else
                  binding = (frame[0] ||= tp.binding)
                  unless binding.local_variable_defined?(name)
                    return [false, "is not a local variable or argument at this line"]
                  end

                  binding.local_variable_get(name)
                end
        return [true, value] if chain.empty?
        return [false, NOT_OPTED_IN] unless point.reads

        [true, chain.inject(value) { |v, m| v.public_send(m) }]
      rescue Exception => e # rubocop:disable Lint/RescueException
        [false, "raised #{CLASS_OF.bind_call(e)}"]
      end

      # A value as the agent's condition takes it: [kind, text].
      def encode(value)
        case value
        when nil then ["nil", ""]
        when true then ["true", ""]
        when false then ["false", ""]
        when Integer then ["int", Args::INTEGER_TO_S.bind_call(value)]
        when Float then ["float", Args::FLOAT_TO_S.bind_call(value)]
        when String then ["str", String.new(value)]
        when Symbol then ["sym", Args::SYMBOL_TO_S.bind_call(value)]
        else ["other", CLASS_OF.bind_call(value).name || "an anonymous class"]
        end
      end

      # The :script_compiled hook, on while any breakpoint is set.
      def watch_loads
        return if @compiled

        @compiled = TracePoint.new(:script_compiled) { |t| compiled(t) }
        @compiled.enable
      end

      # A file was compiled (required, loaded, loaded again): hook the new iseq of every
      # breakpoint in it, before its code runs and defines its methods.
      def compiled(tp)
        return unless tp.eval_script.nil?

        top = tp.instruction_sequence
        return unless top&.path

        @points.values.each do |point|
          next if point.done || !same_file?(top.path, point.path)

          found = innermost(top, point.line)
          # Top-level code now (the file changed): nothing to hook.
          next unless found && found[1].positive?

          waited = point.tp.nil?
          arm(point, found.first)
          Native.break_post(point.id, "note", "#{waited ? 'set' : 'set again'}: #{File.basename(point.path)} " \
                                              "was #{waited ? '' : 'loaded again, '}compiled; hooked " \
                                              "#{describe(found.first)}")
        end
      rescue Exception # rubocop:disable Lint/RescueException
        nil
      end
    end
  end
end
