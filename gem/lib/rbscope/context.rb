# frozen_string_literal: true

module Rbscope
  # The Ruby-side context of a report: thread name, loaded gems, and caller-supplied facts.
  module Context
    module_function

    def for_report(extra)
      thread = Thread.current
      name = thread.name || (thread == Thread.main ? "main" : nil)
      [name, gems, extra.map { |k, v| [k.to_s, v.to_s[0, 1000]] }]
    end

    def gems
      specs = defined?(Gem) ? Gem.loaded_specs : {}
      return @gems if @gems && @gems_count == specs.size

      @gems_count = specs.size
      @gems = specs.map { |name, spec| [name, spec.version.to_s] }.sort
    end
  end
end
