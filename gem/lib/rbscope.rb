# frozen_string_literal: true

# rbscope: a production debugger for Ruby.
#
#   require "rbscope"
#   Rbscope.start                        # or run the app under `rbscope run -- CMD`
#
# When an exception escapes to the top of the program or of a thread (or the app calls
# Rbscope.report), rbscope stores a snapshot of every app frame: self, locals and the
# objects they reach. Browse them with `rbscope list` / `rbscope show ID`.
#
# RBSCOPE_DISABLE=1 turns everything off: nothing native is loaded, nothing is hooked.
require_relative "rbscope/version"
require_relative "rbscope/magic_roots"

module Rbscope
  class << self
    def disabled?
      %w[1 true yes on].include?(ENV.fetch("RBSCOPE_DISABLE", "").strip.downcase)
    end
  end
end

if Rbscope.disabled?
  require_relative "rbscope/disabled"
else
  require_relative "rbscope/agent"
end
