# frozen_string_literal: true

module Rbscope
  # Reports exceptions that escape a thread's block. Ruby has no hook for a thread dying of an
  # exception, so the thread's block is wrapped: the wrapper re-raises at once, so the thread
  # ends exactly as before (join/value still raise it, report_on_exception still prints it).
  module ThreadReporting
    module Wrap
      module_function

      def block(block)
        wrapper = proc do |*args, **kwargs, &blk|
          block.call(*args, **kwargs, &blk)
        rescue Exception => e # rubocop:disable Lint/RescueException
          Rbscope.__report_thread(e, wrapper, block)
          raise
        end
      end
    end

    module Initialize
      def initialize(*args, **kwargs, &block)
        return super unless block && Rbscope.started?

        super(*args, **kwargs, &Wrap.block(block))
      end
    end

    module Start
      %i[start fork].each do |name|
        define_method(name) do |*args, **kwargs, &block|
          return super(*args, **kwargs, &block) unless block && Rbscope.started?

          super(*args, **kwargs, &Wrap.block(block))
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
