# frozen_string_literal: true

require "irb"

module Rbscope
  class Restore
    # IRB "back in the frame": self is the frame's self, locals are its locals. The commands
    # `frames`, `frame N`, `up`, `down` and `snapshot` are added to IRB's command bundle (IRB's
    # own extension point), so they exist in IRB sessions only.
    module Console
      class << self
        attr_accessor :session, :switch_to

        def run(restore, index)
          self.session = restore
          install_commands
          IRB.setup(nil) unless IRB.conf[:PROMPT_MODE]
          IRB.conf[:PROMPT_MODE] = :SIMPLE if IRB.conf[:PROMPT_MODE] == :DEFAULT
          input = nil # one input method for every frame, so read-ahead input is not lost
          loop do
            restore.current = index
            frame = restore.frames.fetch(index)
            $stdout.puts "rbscope: in frame #{index} #{frame}  (frames, frame N, up, down, snapshot)"
            self.switch_to = nil
            workspace = IRB::WorkSpace.new(restore.binding_for(index))
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

        def install_commands
          return if @installed

          @installed = true
          IRB::ExtendCommandBundle.module_eval do
            def frames
              s = Rbscope::Restore::Console.session
              puts(s ? s.frame_list : "not in a restored snapshot")
            end

            def frame(index) = Rbscope::Restore::Console.go(Integer(index))

            def up
              s = Rbscope::Restore::Console.session
              Rbscope::Restore::Console.go(s ? s.current + 1 : 0)
            end

            def down
              s = Rbscope::Restore::Console.session
              Rbscope::Restore::Console.go(s ? s.current - 1 : 0)
            end

            def snapshot
              s = Rbscope::Restore::Console.session
              s && s.info.dup.tap { |i| i.frame = s.frames[s.current] }
            end
          end
        end
      end
    end
  end
end
