# frozen_string_literal: true

# Loaded through RUBYOPT by `rbscope run -- CMD`: starts the agent before the program runs.
# Under `rbscope run` with a trace, RBSCOPE_RUN_HOLD=SECONDS makes the program wait here until
# the trace is hooked (at most that long; more than 60 is ignored), so that a program shorter
# than the CLI's attach is still traced from its first line. Only this process holds: programs
# it starts do not. Nothing here stops the program: a setting that cannot be used is ignored
# with one line on stderr, and if the agent cannot start the program runs without it.
require "rbscope"
unless Rbscope.disabled?
  begin
    Rbscope.start
  rescue StandardError => e
    warn "[rbscope] not started: #{e.message.lines.first&.chomp}"
  end
  raw = ENV.delete("RBSCOPE_RUN_HOLD")&.b&.strip
  hold = begin
    Float(raw.to_s)
  rescue ArgumentError, TypeError
    nil
  end
  if raw && !raw.empty? && (hold.nil? || hold.nan? || hold.negative? || hold > 60)
    warn "[rbscope] ignored RBSCOPE_RUN_HOLD=#{Rbscope::Args.shown(raw)}: expected 0 to 60 seconds"
    hold = nil
  end
  Rbscope::Live.hold_until_traced(hold) if hold&.positive? && Rbscope.started?
end
