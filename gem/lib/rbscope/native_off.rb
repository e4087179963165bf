# frozen_string_literal: true

module Rbscope
  # The stand-in for the native agent when it cannot be loaded (native_loader.rb says why):
  # the same methods, each answering as an agent that is off. The app runs unchanged; calls
  # that can only be answered by the agent raise NotImplementedError with the reason.
  module Native
    VERSION = nil
    BUILT_WITH_RUBY = nil

    class << self
      attr_reader :off_reason

      def __off!(reason)
        @off_reason = reason
      end

      def start(_pairs) = false
      def stop = nil
      def started? = false
      def after_fork = false
      def hold_writer(_hold) = true
      def report(*) = nil
      def snapshot(*) = nil
      def break_post(*) = false
      def break_test(*) = false
      def break_due(*) = false
      def log_post(*) = false
      def flush(_seconds) = true
      def counters = {}
      def store_location = nil
      def socket_path = nil
      def warnings = []
      def flush_traces(_seconds) = nil
      def better_backtrace(_exception, _locations) = nil
      def trace_clock_settled? = false

      %i[backtrace snapshot_json snapshot_data trace_hook trace_retry trace_ignore_owner eval_done
         heap_dump count_objects].each do |name|
        define_method(name) do |*|
          raise NotImplementedError, "rbscope: this needs the native agent, which is off: #{off_reason}"
        end
      end
    end
  end
end
