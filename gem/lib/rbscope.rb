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
module Rbscope
  class << self
    def disabled?
      %w[1 true yes on].include?(ENV.fetch("RBSCOPE_DISABLE", "").strip.downcase)
    end

    # Requires the gem's own lib/rbscope/NAME.rb. When `rbscope inject` loads the gem, the
    # thread that loads it holds the gem's sources (the CLI wrote them into the process with
    # the injected code) and evaluates them here from memory, under their own paths, as
    # `require` would: each file `require` reads waits for the GVL four times, and a main
    # thread busy in Ruby gives it up only every 100 ms (13 files took 1.5 s on Ruby 3.1).
    # That thread then records them as loaded with `Rbscope::Native.__provide`.
    def __require_own(name)
      unless String === name && name.match?(/\A[a-z_]+\z/)
        shown = defined?(Rbscope::Args) ? Rbscope::Args.shown(name) : (String === name ? name.inspect : "another object")
        raise ArgumentError, "expected the name of a file of rbscope's own lib/rbscope, got #{shown}"
      end

      path = File.join(__dir__, "rbscope", "#{name}.rb")
      sources = Thread.current[:__rbscope_sources]
      source = sources&.delete(path)
      return require(path) unless source

      RubyVM::InstructionSequence.compile(source, path, path).eval
      (sources[:loaded] ||= []) << path
      true
    end
  end
end

Rbscope.__require_own "version"
Rbscope.__require_own "args"
Rbscope.__require_own "magic_roots"
Rbscope.__require_own "settings"
Rbscope.__require_own "public_args"
Rbscope.__require_own "slow"

if Rbscope.disabled?
  Rbscope.__require_own "disabled"
else
  Rbscope.__require_own "agent"
end
