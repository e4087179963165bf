# frozen_string_literal: true

# Loaded through RUBYOPT by `rbscope run -- CMD`: starts the agent before the program runs.
require "rbscope"
Rbscope.start unless Rbscope.disabled?
