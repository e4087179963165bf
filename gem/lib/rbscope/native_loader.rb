# frozen_string_literal: true

module Rbscope
  # Loads the native agent built for the running Ruby, or says why it cannot.
  #
  # A checkout or a precompiled platform gem holds one agent per Ruby release, in
  # `rbscope/<major.minor>/rbscope_agent.so`; a source gem, compiled on install, holds one,
  # `rbscope/rbscope_agent.so`, built for the Ruby that installed it. An agent refuses to
  # start in a Ruby release other than its own (it raises LoadError before defining anything).
  # When no agent can be loaded, the app still runs: `Rbscope::Native` is then the stand-in of
  # native_off.rb, every feature that needs the agent is off, and `Rbscope.start` says why in
  # one line.
  module NativeLoader
    RELEASE = RUBY_VERSION[/\A\d+\.\d+/]

    class << self
      # nil when the agent is loaded, else the reason in one line.
      def load
        path = candidates.find { |f| File.file?(f) } || on_load_path
        return missing unless path

        require path
        nil
      rescue LoadError => e
        reason(e)
      end

      # What a precompiled platform gem holds (lib/rbscope/prebuilt.rb, which only
      # `scripts/build-gem --platform` writes), or nil in a checkout or a source gem.
      def prebuilt
        file = File.join(__dir__, "prebuilt.rb")
        return nil unless File.file?(file)

        require file
        Rbscope::PREBUILT
      end

      private

      def missing
        held = prebuilt
        if held
          "this rbscope gem (#{held[:platform]}) has native agents for Ruby " \
            "#{held[:rubies].join(', ')}, not for Ruby #{RELEASE}; install the source gem, which " \
            "builds one for this Ruby with Rust: gem install rbscope --platform ruby " \
            "(Bundler: gem \"rbscope\", force_ruby_platform: true)"
        else
          "no native agent for Ruby #{RELEASE} in this installation of rbscope " \
            "(install the gem with this Ruby, or run scripts/build in a checkout)"
        end
      end

      # Beside this file, by full path: no search of $LOAD_PATH (each file check of a search
      # waits for the GVL, which a busy main thread gives up only every 100 ms when
      # `rbscope inject` loads the gem).
      def candidates
        ext = RbConfig::CONFIG["DLEXT"]
        [File.join(__dir__, RELEASE, "rbscope_agent.#{ext}"), File.join(__dir__, "rbscope_agent.#{ext}")]
      end

      # Where RubyGems put an agent it compiled at install, when not beside this file (its
      # extension directory, which is on $LOAD_PATH).
      def on_load_path
        ["rbscope/#{RELEASE}/rbscope_agent", "rbscope/rbscope_agent"].find do |feature|
          $LOAD_PATH.resolve_feature_path(feature)
        rescue LoadError
          false
        end
      end

      def reason(error)
        message = error.message.lines.first.to_s.strip
        return message if message.start_with?("rbscope:")

        missing = message[/undefined symbol: (\S+)/, 1]
        if missing
          "the native agent cannot load in Ruby #{RUBY_VERSION} (it needs #{missing}, which this " \
            "Ruby does not have); install a version of rbscope that supports this Ruby"
        else
          "the native agent cannot load (#{message}); reinstall the gem with this Ruby"
        end
      end
    end
  end
end
