# frozen_string_literal: true

module Rbscope
  # Reports exceptions that escape a thread's block. Ruby has no hook for a thread dying of an
  # exception, so the thread's block is wrapped, by a Proc made of a native function
  # (Native.thread_body): Ruby runs it in a frame no backtrace shows, so the app's threads
  # carry no rbscope frame. The wrapper reports the exception and resumes the raise, so the
  # thread ends exactly as before (join/value still raise it, report_on_exception still prints
  # it).
  module ThreadReporting
    # The block to give Thread's own constructor: the wrapped block, or the app's own when
    # the agent cannot wrap it (then nothing is reported for this thread, and nothing fails).
    def self.wrap(block)
      Native.thread_body(block)
    rescue StandardError
      block
    end

    module Initialize
      def initialize(*args, **kwargs, &block)
        return super unless block && Rbscope.started?

        super(*args, **kwargs, &ThreadReporting.wrap(block))
      end
    end

    module Start
      %i[start fork].each do |name|
        define_method(name) do |*args, **kwargs, &block|
          return super(*args, **kwargs, &block) unless block && Rbscope.started?

          super(*args, **kwargs, &ThreadReporting.wrap(block))
        end
      end
    end

    def self.install
      return if @installed

      @installed = true
      Thread.prepend(Initialize)
      Thread.singleton_class.prepend(Start)
    end
  end
end
