# frozen_string_literal: true

require "rbscope"
require "sidekiq"

module Rbscope
  # Sidekiq server middleware: a job whose `perform` raises stores a snapshot of the failing
  # frames (Sidekiq then retries it as usual), with the job's class, id, queue and attempt.
  #
  #   require "rbscope/sidekiq"   # in the Sidekiq process; starts rbscope if needed
  class SidekiqMiddleware
    def call(_worker, job, queue)
      yield
    rescue Exception => e # rubocop:disable Lint/RescueException
      Rbscope.report(e, how: "job failed", job_class: job["wrapped"] || job["class"],
                        job_id: job["jid"], queue: queue,
                        attempt: job.fetch("retry_count", -1).to_i + 2)
      raise
    end
  end
end

Sidekiq.configure_server do |config|
  Rbscope.start unless Rbscope.started?
  config.server_middleware { |chain| chain.add Rbscope::SidekiqMiddleware }
end
