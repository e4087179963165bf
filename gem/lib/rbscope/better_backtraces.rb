# frozen_string_literal: true


module Rbscope
  # Better backtraces for exceptions: every frame with its class, `#` or `.`, `$singleton`,
  # `$refinement@Mod`, `{block}` and parameter names, at the line Ruby reports.
  #
  # `exception.better_backtrace` works for exceptions raised while rbscope is running (the
  # frames are copied at raise by the fast capture; nothing extra is hooked). It is nil when
  # there is no copy to build from: raised before Rbscope.start, the copy already replaced by
  # `pending_captures` newer raises, a Ruby where the fast capture is off (see
  # `rbscope doctor -p PID`), or a backtrace set by hand that the copy does not match.
  #
  # `Rbscope::BetterBacktraces.install` (opt-in) prints uncaught exceptions of the main thread
  # and of threads with `report_on_exception` in this format instead of Ruby's. It does not
  # change `Exception#backtrace`: loggers and Rails' backtrace cleaner see what they always
  # saw (only the exception ending the program gets its better lines, once every exit hook
  # registered after Rbscope.start has run, for Ruby to print). `Rbscope::BetterBacktraces::Formatter` is a Logger formatter that prints logged
  # exceptions this way; Rails apps set `config.rbscope.better_backtraces = true`.
  module BetterBacktraces
    # Frames already built, by exception object_id (never reused on Ruby 3.1+), so that asking
    # twice gives the same answer even after the pending copy was replaced. Bounded.
    MEMO_SIZE = 32
    @memo = {}
    @lock = Mutex.new
    @io = nil

    class << self
      # The better backtrace of `exception` (Rbscope::Frame objects, innermost first), or nil.
      def of(exception)
        return nil unless Exception === exception

        key = exception.object_id
        @lock.synchronize do
          return @memo[key] if @memo.key?(key)
        end
        frames = Native.better_backtrace(exception, exception.backtrace_locations)
        return nil unless frames

        frames.freeze
        @lock.synchronize do
          @memo.shift while @memo.size >= MEMO_SIZE
          @memo[key] = frames
        end
      end

      # Prints uncaught exceptions in the better format to `io` (default: $stderr at the time
      # of printing). Starts rbscope if it is not running (the frames come from its capture).
      def install(io: nil)
        unless io.nil? || Args.responds?(io, :write)
          raise Args.type_error("Rbscope::BetterBacktraces.install(io:)", "nil or an object with #write (an IO)", io)
        end

        @io = io
        Rbscope.start unless Rbscope.started?
        @installed = true
      end

      def installed?
        @installed == true
      end

      def uninstall
        @installed = false
      end

      # The report Ruby prints for an uncaught exception, with better frames where they are
      # known (the exception and each cause in turn); frames of rbscope's own wrappers left out.
      def report(exception)
        out = +""
        chain(exception).each_with_index do |current, i|
          lines = lines_of(current)
          out << headline(lines.first, current, i.zero?)
          lines.drop(1).each { |l| out << "\tfrom #{l}\n" }
        end
        out
      end

      # The frames as text: better where known, otherwise Ruby's own locations.
      def lines_of(exception)
        frames = of(exception)
        lines = if frames
                  frames.reject { |f| own_frame?(f.path) }.map(&:to_s)
                else
                  Array(exception.backtrace_locations&.map(&:to_s) || exception.backtrace)
                end
        lines.empty? ? ["-"] : lines
      end

      # Called by rbscope's exit hook with the exception ending the program. Ruby prints that
      # exception after every exit hook has run, from its stored backtrace, and ignores
      # overrides of `full_message` (3.1): so the exception (and each cause) gets its better
      # lines as its backtrace here, at the last moment, and Ruby prints them in its own layout.
      # Nothing else changes; exit hooks registered before Rbscope.start run after this one and
      # see the new lines.
      def __before_exit_report(exception)
        return false unless installed? && printable?(exception)

        chain(exception).each { |e| e.set_backtrace(lines_of(e)) if of(e) }
        true
      rescue StandardError
        false
      end

      # Called when an exception escapes a thread's block (rbscope's thread wrapper).
      def __print_thread(thread, exception, wrapper = nil, block = nil)
        return false unless installed? && printable?(exception) && thread.report_on_exception

        printed = write("#{thread_name(thread, wrapper, block)} terminated with exception " \
                        "(report_on_exception is true):\n#{report(exception)}")
        thread.report_on_exception = false if printed
        printed
      end

      private

      # The exception and its causes, in order, each once (causes can form a cycle).
      def chain(exception)
        seen = {}
        out = []
        current = exception
        while current && !seen[current.object_id]
          seen[current.object_id] = true
          out << current
          current = current.cause
        end
        out
      end

      # Thread#inspect names where the thread's block was written. rbscope's wrapper (a C
      # block) has no place, so Ruby prints none: the app block's place is put back where Ruby
      # puts it, before the status.
      def thread_name(thread, _wrapper, block)
        text = thread.inspect
        theirs = block&.source_location
        return text unless theirs

        text.sub(/ (\w+)>\z/) { " #{theirs.join(':')} #{Regexp.last_match(1)}>" }
      end

      def printable?(exception)
        exception.is_a?(Exception) && !exception.is_a?(SystemExit) && !exception.is_a?(SignalException)
      end

      def headline(location, exception, first)
        message = exception.message.to_s
        message = "unhandled exception" if message.empty? && first
        head, *rest = message.lines(chomp: true)
        text = +"#{location}: #{head} (#{exception.class})\n"
        rest.each { |l| text << "#{l}\n" }
        text
      end

      def own_frame?(path)
        path&.start_with?(LIB_DIR)
      end

      def write(text)
        io = @io || $stderr
        io.write(text)
        io.flush if io.respond_to?(:flush)
        true
      rescue StandardError
        false
      end
    end

    LIB_DIR = "#{File.expand_path("..", __dir__)}/"

    # A Logger formatter that prints logged exceptions with their better backtraces:
    # `logger.formatter = Rbscope::BetterBacktraces::Formatter.new`, then `logger.error(e)`.
    # Loaded (with `logger`) when first named: an app that never uses it does not load Logger
    # for rbscope's sake, and `rbscope inject` into a busy process has fewer files to read.
    autoload :Formatter, File.join(__dir__, "better_backtraces_formatter")
  end
end

class Exception
  # This exception's better backtrace (Rbscope::Frame objects, innermost first), or nil when
  # rbscope has none for it: see Rbscope::BetterBacktraces.
  def better_backtrace
    Rbscope::BetterBacktraces.of(self)
  end
end
