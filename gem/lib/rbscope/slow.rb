# frozen_string_literal: true

module Rbscope
  # `slow_snapshot`: a request or job still running after its budget gets one live snapshot of
  # its thread, taken while it runs (kind `slow`, rate limited like exceptions), with the
  # request's or job's facts as context; then it goes on untouched.
  #
  # One watchdog thread per process ("rbscope-slow", started at the first watch, again in a
  # forked child) waits on a condition variable until the earliest deadline. A request costs a
  # watch on entry and a done on exit: an entry in an identity Hash under a Mutex, nothing
  # else. Every watch has the same budget, so deadlines come in the order of the Hash and the
  # first entry is always the next one due; the watchdog, once asleep until some deadline,
  # wakes then, drops nothing but what is due, and sleeps until the deadline of the first
  # entry left. So a watch wakes it only when it sleeps with no deadline (nothing was
  # watched): under load the watchdog wakes about once per budget, not once per request (a
  # wake per request cost a busy puma a quarter of its throughput in GVL hand-overs). The
  # snapshot is taken outside the Mutex; whatever goes wrong in the watchdog is rescued and
  # the watchdog goes on.
  module Slow
    # Watches kept at most; past this a request is not watched.
    MAX_WATCHED = 10_000

    # One watched request or job. `subject`: the Rack env of a request (its facts are read
    # only when it is slow) or the facts of a job.
    Watch = Struct.new(:thread, :deadline, :what, :subject, :done)

    @mutex = Mutex.new
    @wakeup = ConditionVariable.new
    @watched = {}.compare_by_identity
    @budget = nil
    @thread = nil
    # When the watchdog will wake by itself (nil: it waits for a signal).
    @wake_at = nil

    class << self
      # Seconds a request or job may run (nil: off), from the agent's settings.
      attr_reader :budget

      # Called by Rbscope.start (`seconds` as settings.rb passes it to the agent, or nil) and
      # Rbscope.stop (nil).
      def configure(seconds)
        @budget = seconds && Float(seconds)
        @budget_text = @budget && "#{@budget == @budget.to_i ? @budget.to_i : @budget}s"
      rescue ArgumentError, TypeError
        @budget = nil
      end

      # Starts watching this thread's request (`what` "request", `subject` its env) or job
      # (`what` "job", `subject` its facts). Returns the watch to hand to #done, or nil when
      # slow snapshots are off, this thread is already watched (a job run inside a request,
      # an ActiveJob inside Sidekiq) or the registry is full.
      def watch(what, subject)
        budget = @budget
        return nil if budget.nil? || Thread.current[:__rbscope_slow]

        w = Watch.new(Thread.current, Process.clock_gettime(Process::CLOCK_MONOTONIC) + budget, what, subject, false)
        @mutex.synchronize do
          return nil if @watched.size >= MAX_WATCHED

          @watched[w] = true
          start_watchdog unless @thread&.alive?
          if @wake_at.nil? || w.deadline < @wake_at
            @wake_at = w.deadline
            @wakeup.signal
          end
        end
        Thread.current[:__rbscope_slow] = true
        w
      rescue StandardError
        nil
      end

      # The request or job of `w` (from #watch) ended.
      def done(w)
        return unless w

        w.done = true
        Thread.current[:__rbscope_slow] = nil
        @mutex.synchronize { @watched.delete(w) }
      rescue StandardError
        nil
      end

      # A forked child: the parent's watches and watchdog are not its own.
      def after_fork
        @mutex = Mutex.new
        @wakeup = ConditionVariable.new
        @watched = {}.compare_by_identity
        @thread = nil
        @wake_at = nil
        Thread.current[:__rbscope_slow] = nil
      end

      # How many requests and jobs are watched now.
      def watched = @watched.size

      private

      # (Under @mutex.)
      def start_watchdog
        @thread = Thread.new { watchdog }
        @thread.name = "rbscope-slow"
        @thread.report_on_exception = false
      end

      # Never ends on an error: it is rescued, and the watchdog pauses a moment so that an
      # error that repeats cannot make it spin.
      def watchdog
        loop do
          w = next_due
          snapshot(w) if w
        rescue StandardError
          sleep 0.1
        end
      end

      # Waits for the first watch to be due and takes it out of the registry.
      def next_due
        @mutex.synchronize do
          loop do
            first = @watched.first
            if first.nil?
              @wake_at = nil
              @wakeup.wait(@mutex)
              next
            end
            w = first[0]
            wait = w.deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
            if wait <= 0
              @watched.delete(w)
              return w
            end
            @wake_at = w.deadline
            @wakeup.wait(@mutex, wait)
          end
        end
      end

      # One live snapshot of the slow thread, unless its request ended meanwhile.
      def snapshot(w)
        facts = w.what == "request" ? Middleware.request_context(w.subject) : w.subject
        how = "#{w.what} still running after #{@budget_text}"
        thread = w.thread
        context = Context.for_report(Context.extra(facts), thread)
        return if w.done || !thread.alive?

        Native.snapshot(thread, context, how, true)
      end
    end
  end
end
