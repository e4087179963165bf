# frozen_string_literal: true

require "irb"

module Rbscope
  class Restore
    # IRB "back in the frame": self is the frame's self, locals are its locals, the lexical
    # scope and `__method__` are the frame's (FrameScope). The commands `frames`, `frame N`,
    # `up`, `down`, `snapshot`, `class_state` and `threads` are lines the workspace recognises, and methods of IRB's
    # command bundle (IRB's own extension point) for use inside an expression; an app's own
    # method or local of the same name comes first.
    module Console
      LIB = "#{File.expand_path(__dir__)}/"

      # IRB's workspace for a frame. Each input is evaluated as if at the frame's line, so
      # `__FILE__` and `__LINE__` (and the failing line, pasted and re-run) answer the frame's
      # file and line, whatever path IRB passes. An error's backtrace is cut to the app's frames:
      # the input's own frame (named as the frame is) and what it called, without the console's
      # machinery below it (IRB, rbscope, the `ruby -e` or app console that started it) or
      # rbscope's stand-ins above it.
      class Workspace < IRB::WorkSpace
        def initialize(binding, frame)
          super(binding)
          # IRB before 1.13 swaps a frozen self (or a BasicObject) for a delegator, with a new
          # binding whose self is the delegator; keep the frame's own binding (IRB's commands
          # then live on the delegator only, out of the input's reach).
          if !binding.equal?(@binding) && SimpleDelegator === @main
            @binding = binding
            @binding.local_variable_set(:_, nil)
          end
          @frame = frame
          @path = FrameScope.file(frame.path)
          @lineno = Integer(frame.lineno || 1)
          # How Ruby names the input's frame in a backtrace (`in 'block (3 levels) in ...'`),
          # to find it and name it as the frame is.
          @eval_label = binding.eval("::Kernel.caller(0, 1).first", @path, @lineno).to_s[/:in (.*)\z/, 1]
        end

        COMMAND = /\A\s*(frames|up|down|snapshot|class_state|threads|frame)(?:(?:\s+|\s*\(\s*)(\d+)\s*\)?)?\s*\z/.freeze

        # IRB 1.4-1.6 pass (context, statements, file, line); 1.7 and later (statements, file, line).
        def evaluate(*args)
          statements = args.find { |a| a.is_a?(String) }
          # A line that is one of rbscope's commands runs it, whatever self is (IRB cannot add
          # its command methods to a frozen self or a BasicObject), unless the name is the
          # app's own (a local, or a method of self).
          command = COMMAND.match(statements)
          return Console.command(command[1], command[2]) if command && !apps?(command[1])

          @binding.eval(statements, @path, @lineno)
        rescue ::StandardError, ::ScriptError, ::SystemStackError => e
          tidy(e)
          raise
        end

        private

        def apps?(name)
          return true if @binding.local_variable_defined?(name)

          owner = Kernel.instance_method(:method).bind_call(@binding.receiver, name).owner
          owner != IRB::ExtendCommandBundle
        rescue NameError
          false
        end

        def tidy(error)
          lines = error.backtrace or return
          input = lines.index { |l| blocks_in_input(l) == 0 }
          kept = input ? lines[0..input] : lines.take_while { |l| !l.start_with?(LIB) }
          kept = kept.reject { |l| l.start_with?(LIB) }.map { |l| renamed(l) }
          # A syntax error has no frame of its own: it is the input's.
          kept = ["#{@path}:#{@lineno}:in #{@eval_label}"].map { |l| renamed(l) } if kept.empty? && @eval_label
          error.set_backtrace(kept)
        rescue ::StandardError
          nil # a backtrace that cannot be tidied is shown as it is
        end

        # For a backtrace line of the input's own frame, 0; of a block in the input, how many
        # blocks deep; else nil.
        def blocks_in_input(line)
          return nil unless @eval_label && line.start_with?("#{@path}:")

          label = line[/:in (.*)\z/, 1] or return nil
          return 0 if label == @eval_label

          own = BLOCK.match(@eval_label) or return nil
          inner = BLOCK.match(label) or return nil
          return nil unless inner[:quote] == own[:quote] && inner[:base] == own[:base]

          depth = inner[:levels].to_i.clamp(1..) - own[:levels].to_i.clamp(1..)
          depth.positive? ? depth : nil
        end

        BLOCK = /\A(?<quote>.)block (?:\((?<levels>\d+) levels\) )?in (?<base>.*)'\z/.freeze

        # The input's frames named as the frame is (`Shop::Cart#check{block}`).
        def renamed(line)
          depth = blocks_in_input(line) or return line
          name = @frame.label.to_s[/\A[^(]*/]
          "#{line[/\A.*?:\d+:in /]}#{@eval_label[0]}#{name}#{'{block}' * depth}'"
        end
      end

      class << self
        attr_accessor :session, :switch_to

        def run(restore, index)
          self.session = restore
          install_commands
          IRB.setup(nil) unless IRB.conf[:PROMPT_MODE]
          IRB.conf[:PROMPT_MODE] = :SIMPLE if IRB.conf[:PROMPT_MODE] == :DEFAULT
          # IRB 1.4 truncates an echoed assignment to the terminal's width, which it cannot ask
          # a pipe for.
          IRB.conf[:ECHO_ON_ASSIGNMENT] = true unless $stdin.tty?
          input = nil # one input method for every frame, so read-ahead input is not lost
          loop do
            restore.current = index
            frame = restore.frames.fetch(index)
            $stdout.puts "rbscope: in frame #{index} #{frame}  (frames, frame N, up, down, snapshot, class_state, threads)"
            self.switch_to = nil
            workspace = Workspace.new(restore.binding_for(index), frame)
            irb = IRB::Irb.new(workspace, input)
            input ||= irb.context.io
            IRB.conf[:MAIN_CONTEXT] = irb.context
            catch(:IRB_EXIT) { irb.eval_input }
            break if switch_to.nil?

            index = switch_to
          end
          nil
        ensure
          self.session = nil
        end

        def go(index)
          s = session or return "not in a restored snapshot"
          return "no frame #{index} (0..#{s.frames.size - 1})" unless index.between?(0, s.frames.size - 1)

          self.switch_to = index
          throw :IRB_EXIT
        end

        # The commands, by name (`frame` takes the frame's number).
        def command(name, arg = nil)
          s = session or return "not in a restored snapshot"
          case name
          when "frames" then $stdout.puts(s.frame_list)
          when "frame" then arg ? go(Integer(arg)) : "frame N, where N is one of 0..#{s.frames.size - 1} (see frames)"
          when "up" then go(s.current + 1)
          when "down" then go(s.current - 1)
          when "snapshot" then s.info.dup.tap { |i| i.frame = s.frames[s.current] }
          when "class_state" then s.class_state(arg)
          when "threads" then $stdout.puts(s.take_list)
          end
        end

        # Also as methods of IRB's command bundle, for use inside an expression (`frame(2)`);
        # an app's own method of the same name on the console's self comes first.
        def install_commands
          return if @installed

          @installed = true
          IRB::ExtendCommandBundle.module_eval do
            def frames(*args, **kw, &blk)
              defined?(super) ? super : Rbscope::Restore::Console.command("frames")
            end

            def frame(*args, **kw, &blk)
              defined?(super) ? super : Rbscope::Restore::Console.command("frame", *args)
            end

            def up(*args, **kw, &blk) = defined?(super) ? super : Rbscope::Restore::Console.command("up")
            def down(*args, **kw, &blk) = defined?(super) ? super : Rbscope::Restore::Console.command("down")

            def snapshot(*args, **kw, &blk)
              defined?(super) ? super : Rbscope::Restore::Console.command("snapshot")
            end

            def class_state(*args, **kw, &blk)
              defined?(super) ? super : Rbscope::Restore::Console.command("class_state", *args)
            end

            def threads(*args, **kw, &blk)
              defined?(super) ? super : Rbscope::Restore::Console.command("threads")
            end
          end
        end
      end
    end
  end
end
