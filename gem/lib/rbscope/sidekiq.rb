# frozen_string_literal: true

require "rbscope"
require "sidekiq"

module Rbscope
  # Sidekiq server middleware: a job whose `perform` raises stores a snapshot of the failing
  # frames (Sidekiq then retries it as usual), with the job's class, id, queue and attempt;
  # with `slow_snapshot` set, a job still running after that many seconds gets one live
  # snapshot of its thread (slow.rb).
  #
  #   require "rbscope/sidekiq"   # in the Sidekiq process; starts rbscope if needed
  class SidekiqMiddleware
    def call(_worker, job, queue)
      watch = Slow.watch("job", facts(job, queue)) if Slow.budget
      yield
    rescue Exception => e # rubocop:disable Lint/RescueException
      report(e, job, queue)
      raise
    ensure
      Slow.done(watch)
    end

    private

    # Never raises into Sidekiq: an odd job hash (no retry_count, a retry_count that is not a
    # number) still stores the snapshot, with the facts that could be read.
    def report(exception, job, queue)
      Rbscope.report(exception, how: "job failed", **facts(job, queue))
    rescue StandardError
      nil
    end

    def facts(job, queue)
      job = {} unless Hash === job
      { job_class: job["wrapped"] || job["class"], job_id: job["jid"], queue: queue, attempt: attempt(job) }
    rescue StandardError
      {}
    end

    # Sidekiq's retry_count is absent on the first run and counts retries from 0 after it.
    def attempt(job)
      count = job["retry_count"]
      count = Integer(count, exception: false) if String === count
      count = count.to_i if Float === count && count.finite?
      Integer === count && count >= 0 ? count + 2 : 1
    end
  end
end

Sidekiq.configure_server do |config|
  Rbscope.start unless Rbscope.started?
  config.server_middleware { |chain| chain.add Rbscope::SidekiqMiddleware }
end
