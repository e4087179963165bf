# frozen_string_literal: true

require "rbconfig"
Rbscope.__require_own "context"
Rbscope.__require_own "thread_reporting"
Rbscope.__require_own "fork_hook"
Rbscope.__require_own "middleware"
Rbscope.__require_own "better_backtraces"
Rbscope.__require_own "live"
Rbscope.__require_own "breakpoints"

Rbscope.__require_own "native_loader"
if (problem = Rbscope::NativeLoader.load)
  # The app runs on without rbscope's native features; Rbscope.start says why, once.
  Rbscope.__require_own "native_off"
  Rbscope::Native.__off!(problem)
end

module Rbscope
  # One frame of Rbscope.backtrace (defined natively; these are conveniences).
  class Frame
    def inspect = "#<Rbscope::Frame #{self}>"
  end

  # See Rbscope.__reading_this_thread.
  HOLD_INTERRUPTS = { Object => :never }.freeze

  class << self
    # Starts capturing. Options override RBSCOPE_* environment variables; see
    # Rbscope::Settings::KEYS for the list. Returns true when started, false when it was
    # already running.
    def start(**options)
      pairs = Settings.pairs(PublicArgs.start(options))
      started = Native.start(pairs)
      unless started
        announce_off
        return false
      end

      Slow.configure(pairs.assoc("slow_snapshot")&.last)
      install_exit_hook
      ThreadReporting.install
      ForkHook.install
      Native.warnings.each { |w| warn "[rbscope] warning: #{w}" }
      true
    end

    def stop
      Slow.configure(nil)
      Native.stop
    end

    def started?
      Native.started?
    end

    # Why the native agent is not loaded in this process (one line), or nil when it is.
    def agent_problem
      Native.respond_to?(:off_reason) ? Native.off_reason : nil
    end

    # Stores a snapshot of `exception` (its frames as they were at raise, values as they are
    # now). Returns the snapshot id, or nil if nothing was stored (not started, rate limited,
    # queue full: see `rbscope doctor`). Extra keyword arguments are stored as context (at most
    # 100; each value as its #to_s, cut to 1000 characters). Raises TypeError when `exception`
    # is not an Exception or `how` not a String or Symbol.
    def report(exception, how: "Rbscope.report", **context)
      how = PublicArgs.report(exception, how, context)
      extra = Context.extra(context)
      return nil unless Native.started?

      context = Context.for_report(extra)
      __reading_this_thread do
        Native.report(exception, context, how)
      rescue StandardError
        nil
      end
    end

    # Stores a live snapshot of `thread` (this one by default, or any other live thread) now:
    # every app frame with self, locals and the objects they reach, as an exception snapshot
    # has, listed as `(live)` and restorable like any snapshot. No exception is raised; the
    # thread goes on. Returns the snapshot id, or nil if nothing was stored (not started, rate
    # limited, queue full). Extra keyword arguments are stored as context, as for `report`.
    # Raises TypeError when `thread` is not a Thread, ArgumentError when it has ended.
    def snapshot(thread = Thread.current, how: "Rbscope.snapshot", **context)
      how = PublicArgs.snapshot(thread, how, context)
      extra = Context.extra(context)
      return nil unless Native.started?

      context = Context.for_report(extra, thread)
      __reading_this_thread { Native.snapshot(thread, context, how, nil) }
    end

    # Runs the agent's reading of this thread (a report, a snapshot) with Thread#kill and
    # Thread#raise (Timeout's among them) held back until it is done. The agent calls Ruby
    # methods under rb_protect while it reads; an interrupt delivered inside one of those calls
    # would be caught there and lost (a kill lost for good: Ruby ignores later kills of a thread
    # already being killed). Held back, it is delivered the moment the block returns.
    def __reading_this_thread(&block)
      Thread.handle_interrupt(HOLD_INTERRUPTS, &block)
    end

    # Every frame of `thread`'s stack (any thread, not only the current one), innermost first:
    # Rbscope::Frame objects with #path, #lineno (the line executing), #label
    # ("Billing::Invoice#total(rate)"), #method_name, #class_path, #kind (:instance, :class,
    # :singleton, :refinement, :top), #refined_in, #block_depth, #cfunc?, #internal? (Ruby's own
    # code: a C function or a core method written in Ruby) and #parameters.
    # Works whether or not the agent is started; needs a Ruby whose VM layout rbscope knows
    # (NotImplementedError otherwise, saying why).
    def backtrace(thread = Thread.current)
      frames = Native.backtrace(PublicArgs.thread(thread))
      # Leave out this method and the native call it made.
      thread.equal?(Thread.current) ? frames.drop(2) : frames
    end

    # Writes the heap to `path` (default: a new file in the agent's private directory) in
    # ObjectSpace.dump_all's format, from a forked child: the app pauses only for the fork
    # (and a GC with gc: true). Returns when the file is complete:
    #   {path:, objects:, roots:, bytes:, pause_ms:, total_ms:, forked:, allocation_info:}
    # Raises RuntimeError saying why when it cannot (bad path, disk full, fork refused: then
    # in_process: true writes from this process, pausing it for the whole dump). `path` is nil,
    # a String or a Pathname; the flags are true or false (TypeError otherwise).
    def heap_dump(path = nil, gzip: false, gc: false, in_process: false)
      Native.heap_dump(*PublicArgs.heap_dump(path, gzip, gc, in_process))
    end

    # Live objects per class, for the classes named and everything inside them
    # (`count_objects(["MyApp", "User"])` counts MyApp, MyApp::*, User): {"MyApp::Order" => 12}.
    # With no names, every class. One walk of the heap pages; no file is written. `names` is
    # an Array (at most 10,000) of Strings, Symbols or named classes and modules, or one of them.
    def count_objects(names = [])
      Native.count_objects(PublicArgs.class_names(names))
    end

    # Counters of what the agent captured, stored and dropped.
    def counters
      Native.counters
    end

    def store_location
      Native.store_location
    end

    # Waits up to `seconds` (at most 60) for queued snapshots to reach the store.
    def flush(seconds = 5)
      Native.flush([PublicArgs.seconds(seconds), 60.0].min)
    end

    # Called by the at_exit hook with the exception that is ending the program, if any.
    def __report_exit(exception)
      Native.flush_traces(0.5)
      if exception && !ignored_at_exit?(exception)
        report(exception, how: "escaped the program")
      end
      warn "[rbscope] snapshots not written before exit (see the store errors above); they are lost" unless flush(5)
      BetterBacktraces.__before_exit_report(exception) if exception
    end

    # Called when an exception escapes a thread's block.
    # (`wrapper` is unused: rbscope's wrapper is a C block; `block` is the app's.)
    def __report_thread(exception, wrapper = nil, block = nil)
      report(exception, how: "escaped a thread") unless ignored_at_exit?(exception)
      BetterBacktraces.__print_thread(Thread.current, exception, wrapper, block)
    end

    private

    def ignored_at_exit?(exception)
      exception.is_a?(SystemExit) || exception.is_a?(SignalException)
    end

    # The one line an app without its agent prints, at its first Rbscope.start.
    def announce_off
      return if @off_announced || agent_problem.nil?

      @off_announced = true
      warn "[rbscope] off: #{agent_problem}"
    end

    def install_exit_hook
      return if @exit_hook_installed

      @exit_hook_installed = true
      at_exit { Rbscope.__report_exit($!) }
    end
  end
end

# A platform gem on a Ruby it has no agent for (RubyGems installs one outside its Ruby range only
# when forced, or a release is missing inside the range): said at require, once, with which gem
# to install instead, as an app that never calls Rbscope.start would otherwise not hear of it.
Rbscope.__send__(:announce_off) if Rbscope.agent_problem && Rbscope::NativeLoader.prebuilt
