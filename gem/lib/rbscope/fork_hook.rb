# frozen_string_literal: true

module Rbscope
  # Gives a forked child (a puma or unicorn worker) its own agent: new writer thread, new
  # control socket. Process._fork (Ruby 3.1+) is the one place every fork goes through.
  # The agent's writer thread is held out of the store around the fork, so the child does not
  # inherit the store library in the middle of a write (its own connection would then wait
  # on locks nobody holds).
  module ForkHook
    module Hook
      def _fork
        Rbscope::Native.hold_writer(true)
        pid = super
        if pid.zero?
          Rbscope::Slow.after_fork
          Rbscope::Native.after_fork
        end
        pid
      ensure
        Rbscope::Native.hold_writer(false) unless pid&.zero?
      end
    end

    def self.install
      return if @installed || !Process.respond_to?(:_fork)

      @installed = true
      Process.singleton_class.prepend(Hook)
    end
  end
end
