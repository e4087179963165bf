# frozen_string_literal: true

module Rbscope
  # `slow_snapshot`: a request or job still running after its budget gets one live snapshot of
  # its thread, taken while it runs (kind `slow`, rate limited like exceptions), with the
  # request's or job's facts as context; then it goes on untouched.
  #
  # One watchdog thread per process ("rbscope-slow", started at the first watch, again in a
  # forked child) waits on a condition variable until the earliest deadline. The registry is
  # an identity Hash from each watched thread to its watch, so a request costs one insert on
  # entry and one delete on exit, and a thread already watched (a job run inside a request, an
  # ActiveJob inside Sidekiq) is not watched twice. Every watch has the same budget, so
  # deadlines come in the order of the Hash and its first entry is always the next one due.
  # The watchdog, once asleep until a deadline, wakes then, takes out only what is due, and
  # sleeps until the deadline of the first entry left, or one budget when nothing is watched;
  # a watch wakes it only when it sleeps with no deadline or a later one (after a change of
  # budget, or when it is not running). So it wakes about once per budget, not once per
  # request: a wake per request cost a busy puma a quarter of its throughput in GVL
  # hand-overs. A watch and a done are single Hash operations, atomic under CRuby's GVL (the
  # only Ruby rbscope runs on), so they take the Mutex only to wake the watchdog. The snapshot
  # is taken outside the Mutex; whatever goes wrong in the watchdog is rescued and it goes on.
  module Slow
    # Threads watched at most; past this a request is not watched.
    MAX_WATCHED = 10_000

    # A watch: [deadline, what, subject, done]. `what`: "request" or "job"; `subject`: the
    # Rack env of a request (its facts are read only when it is slow) or the facts of a job.
    DEADLINE = 0
    WHAT = 1
    SUBJECT = 2
    DONE = 3

    @mutex = Mutex.new
    @wakeup = ConditionVariable.new
    @watched = {}.compare_by_identity
    @budget = nil
    @thread = nil
    # When the watchdog will wake by itself (nil: it waits for a signal, or is not running).
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
      # (`what` "job", `subject` its facts). Returns the watch to hand to #done on the same
      # thread, or nil when slow snapshots are off, this thread is already watched or the
      # registry is full.
      def watch(what, subject)
        budget = @budget
        return nil if budget.nil?

        watched = @watched
        thread = Thread.current
        return nil if watched.key?(thread) || watched.size >= MAX_WATCHED

        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + budget
        w = [deadline, what, subject, false]
        # Inserted, then @wake_at read: the watchdog clears @wake_at before it looks at the
        # registry, so either it sees this entry or this watch sees nil and wakes it (under
        # the Mutex, so not before it waits).
        watched[thread] = w
        wake_at = @wake_at
        wake(deadline) if wake_at.nil? || deadline < wake_at
        w
      rescue StandardError
        nil
      end

      # The request or job of `w` (from #watch, on this thread) ended.
      def done(w)
        return unless w

        w[DONE] = true
        @watched.delete(Thread.current)
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
      end

      # How many requests and jobs are watched now.
      def watched = @watched.size

      private

      # Starts the watchdog if it is not running, else wakes it to look again.
      def wake(deadline)
        @mutex.synchronize do
          if @thread&.alive?
            @wake_at = deadline
            @wakeup.signal
          else
            @thread = Thread.new { watchdog }
            @thread.name = "rbscope-slow"
            @thread.report_on_exception = false
          end
        end
      end

      # Never ends on an error: it is rescued, and the watchdog pauses a moment so that an
      # error that repeats cannot make it spin. Should it end anyway, the next watch starts
      # another.
      def watchdog
        loop do
          thread, w = next_due
          snapshot(thread, w) if w
        rescue StandardError
          sleep 0.1
        end
      ensure
        @wake_at = nil
      end

      # Waits for the first watch to be due and takes it out of the registry: [thread, watch].
      def next_due
        @mutex.synchronize do
          loop do
            @wake_at = nil
            first = @watched.first
            if first.nil?
              idle
              next
            end
            thread, w = first
            wait = w[DEADLINE] - Process.clock_gettime(Process::CLOCK_MONOTONIC)
            if wait <= 0
              @watched.delete(thread)
              return first
            end
            @wake_at = w[DEADLINE]
            @wakeup.wait(@mutex, wait)
          end
        end
      end

      # Nothing is watched: sleep one budget (a watch made meanwhile is due after that, so it
      # need not wake the watchdog), or until woken when slow snapshots are off. Were it to
      # sleep until woken, a server that answers one request at a time would wake it at every
      # request: each finds it asleep with no deadline, and it finds the registry empty again.
      # (Under @mutex.)
      def idle
        budget = @budget
        if budget
          @wake_at = Process.clock_gettime(Process::CLOCK_MONOTONIC) + budget
          @wakeup.wait(@mutex, budget)
        else
          @wakeup.wait(@mutex)
        end
      end

      # One live snapshot of the slow thread, unless its request ended meanwhile.
      def snapshot(thread, w)
        facts = w[WHAT] == "request" ? Middleware.request_context(w[SUBJECT]) : w[SUBJECT]
        how = "#{w[WHAT]} still running after #{@budget_text}"
        context = Context.for_report(Context.extra(facts), thread)
        return if w[DONE] || !thread.alive?

        Rbscope.__reading_this_thread { Native.snapshot(thread, context, how, ["slow", how]) }
      end
    end
  end
end
