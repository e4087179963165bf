# frozen_string_literal: true

require "logger"

module Rbscope
  module BetterBacktraces
    # A Logger formatter that prints logged exceptions with their better backtraces (see
    # better_backtraces.rb, which autoloads it).
    class Formatter < ::Logger::Formatter
      private

      def msg2str(msg)
        return super unless msg.is_a?(Exception)

        lines = BetterBacktraces.lines_of(msg)
        "#{msg.message} (#{msg.class})\n#{lines.join("\n")}"
      end
    end
  end
end
