# frozen_string_literal: true

module Rbscope
  # `slow_snapshot`: a request or job still running after its budget gets one live snapshot of
  # its thread, taken while it runs (kind `slow`, rate limited like exceptions), with the
  # request's or job's facts as context; then it goes on untouched.
  #
  # A request that is not slow must cost next to nothing, so a watch records no time and
  # allocates nothing: it puts the request's env (or the job's facts) in a registry, an identity
  # Hash keyed by thread (one for requests, one for jobs), and `done` deletes it. Each is one
  # Hash operation, atomic under CRuby's GVL (the only Ruby rbscope runs on), so there is no
  # Mutex. A thread already watched (a job run inside a request, an ActiveJob inside Sidekiq)
  # is not watched twice.
  #
  # One watchdog thread per process ("rbscope-slow", started by Rbscope.start, again in a
  # forked child) looks at the registries TICKS times per budget. It notes when it first sees
  # each watch (a request is told apart from the next one on the same thread by its subject's
  # identity: every request has its own env, every job its own facts) and takes the snapshot
  # once a budget has passed since then. A request was started before it was first seen, so
  # it has run at least its budget when its snapshot is taken, and at most one look more
  # (a budget of 10 s: taken between 10 and 11.25 s). The watchdog reads a copy of each
  # registry (`to_a`, one C call), never iterates the live Hash, and takes each snapshot
  # outside its Mutex; whatever goes wrong in it is rescued and it goes on.
  module Slow
    # Threads watched at most; past this a request is not watched.
    MAX_WATCHED = 10_000
    # Looks per budget.
    TICKS = 8

    @mutex = Mutex.new
    @wakeup = ConditionVariable.new
    @requests = {}.compare_by_identity
    @jobs = {}.compare_by_identity
    @budget = nil
    @thread = nil

    class << self
      # Seconds a request or job may run (nil: off), from the agent's settings.
      attr_reader :budget

      # Called by Rbscope.start (`seconds` as settings.rb passes it to the agent, or nil) and
      # Rbscope.stop (nil): sets the budget and starts, wakes or ends the watchdog.
      def configure(seconds)
        budget = begin
          seconds && Float(seconds)
        rescue ArgumentError, TypeError
          nil
        end
        budget = nil if budget && !budget.positive?
        @budget_text = budget && "#{budget == budget.to_i ? budget.to_i : budget}s"
        @budget = budget
        run_watchdog
      end

      # Starts watching this thread's request (`what` "request", `subject` its env) or job
      # (`what` "job", `subject` its facts). Returns the watch to hand to #done on the same
      # thread, or nil when slow snapshots are off, this thread is already watched or the
      # registry is full.
      def watch(what, subject)
        return nil if @budget.nil?

        thread = Thread.current
        requests = @requests
        jobs = @jobs
        return nil if requests.key?(thread) || jobs.key?(thread)

        registry = what == "request" ? requests : jobs
        return nil if registry.size >= MAX_WATCHED

        registry[thread] = subject
        registry
      rescue StandardError
        nil
      end

      # The request or job of `watch` (from #watch, on this thread) ended.
      def done(watch)
        watch&.delete(Thread.current)
        nil
      rescue StandardError
        nil
      end

      # A forked child: the parent's watches and watchdog are not its own.
      def after_fork
        @mutex = Mutex.new
        @wakeup = ConditionVariable.new
        @requests = {}.compare_by_identity
        @jobs = {}.compare_by_identity
        @thread = nil
        run_watchdog
      end

      # How many requests and jobs are watched now.
      def watched = @requests.size + @jobs.size

      private

      # Starts the watchdog when a budget is set and it is not running; else wakes it to take
      # the new budget (or to end, without one).
      def run_watchdog
        @mutex.synchronize do
          if @thread&.alive?
            @wakeup.signal
          elsif @budget
            @thread = Thread.new { watchdog }
            @thread.name = "rbscope-slow"
            @thread.report_on_exception = false
          end
        end
      end

      # Looks at the registries TICKS times per budget until slow snapshots are turned off.
      # Never ends on an error: it is rescued, and the next look comes one tick later.
      def watchdog
        seen = {}.compare_by_identity
        while (budget = @budget)
          begin
            look(seen, budget)
          rescue StandardError
            nil
          end
          @mutex.synchronize { @wakeup.wait(@mutex, budget / TICKS) if @budget }
        end
      ensure
        @mutex.synchronize { @thread = nil if @thread.equal?(Thread.current) }
      end

      # One look: notes each watch seen for the first time (`seen`: thread => [subject, first
      # seen at, snapshot taken]), snapshots those seen a budget ago, forgets those that ended.
      def look(seen, budget)
        now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        current = {}.compare_by_identity
        [[@requests, "request"], [@jobs, "job"]].each do |registry, what|
          registry.to_a.each do |thread, subject|
            current[thread] = true
            s = seen[thread]
            if s.nil? || !s[0].equal?(subject)
              seen[thread] = [subject, now, false]
            elsif !s[2] && now - s[1] >= budget
              s[2] = true
              snapshot(thread, what, subject, registry)
            end
          end
        end
        seen.delete_if { |thread, _| !current.key?(thread) }
      end

      # One live snapshot of the slow thread, unless its request ended meanwhile.
      def snapshot(thread, what, subject, registry)
        facts = what == "request" ? Middleware.request_context(subject) : subject
        how = "#{what} still running after #{@budget_text}"
        context = Context.for_report(Context.extra(facts), thread)
        return unless registry[thread].equal?(subject) && thread.alive?

        Rbscope.__reading_this_thread { Native.snapshot(thread, context, how, ["slow", how]) }
      end
    end
  end
end
