# frozen_string_literal: true

module Rbscope
  # Gives a forked child (a puma or unicorn worker) its own agent: new writer thread, new
  # control socket. Process._fork (Ruby 3.1+) is the one place every fork goes through.
  module ForkHook
    module Hook
      def _fork
        pid = super
        if pid.zero?
          Rbscope::Slow.after_fork
          Rbscope::Native.after_fork
        end
        pid
      end
    end

    def self.install
      return if @installed || !Process.respond_to?(:_fork)

      @installed = true
      Process.singleton_class.prepend(Hook)
    end
  end
end
