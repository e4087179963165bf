# frozen_string_literal: true

# Loaded through RUBYOPT by `rbscope run -- CMD`: starts the agent before the program runs.
# Under `rbscope run` with a trace, RBSCOPE_RUN_HOLD=SECONDS makes the program wait here until
# the trace is hooked (at most that long), so that a program shorter than the CLI's attach is
# still traced from its first line. Only this process holds: programs it starts do not.
require "rbscope"
unless Rbscope.disabled?
  Rbscope.start
  hold = ENV.delete("RBSCOPE_RUN_HOLD").to_f
  Rbscope::Live.hold_until_traced(hold) if hold.positive? && Rbscope.started?
end
