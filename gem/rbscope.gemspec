# frozen_string_literal: true

require_relative "lib/rbscope/version"

Gem::Specification.new do |s|
  s.name = "rbscope"
  s.version = Rbscope::VERSION
  s.summary = "A production debugger for Ruby: exception snapshots, better backtraces, live attach, heap analysis"
  s.description = "rbscope captures self, locals and the objects they reach for every app frame of a " \
                  "reported exception, stores them in SQLite, and lets you browse them later. " \
                  "The agent is a Rust native extension: prebuilt in the x86_64-linux gem, built " \
                  "with cargo on install from the source gem."
  s.authors = ["rbscope developers"]
  s.license = "MIT"
  s.required_ruby_version = ">= 3.1"   # the source gem; a platform gem narrows it below
  s.bindir = "exe"
  s.executables = ["rbscope"]
  platform = ENV["RBSCOPE_GEM_PLATFORM"].to_s
  if platform.empty?
    # The source gem: extconf.rb builds the agent and the CLI with cargo on install.
    s.files = Dir["lib/**/*.rb", "exe/*", "ext/rbscope/extconf.rb", "ext/rbscope/rust/**/*"]
              .reject { |f| f.include?("/target/") }
    s.extensions = ["ext/rbscope/extconf.rb"]
  else
    # The platform gem (scripts/build-gem --platform): the CLI and one agent per Ruby release,
    # prebuilt; nothing is compiled on install. RubyGems and Bundler choose it only for Rubies
    # from its oldest to its newest agent's release, and the source gem elsewhere.
    s.platform = platform
    s.files = Dir["lib/**/*.rb", "exe/*", "lib/rbscope/rbscope-cli", "lib/rbscope/*/rbscope_agent.so"]
    releases = Dir["lib/rbscope/*/rbscope_agent.so"].map { |f| Gem::Version.new(File.basename(File.dirname(f))) }.sort
    abort "rbscope.gemspec: no agent under lib/rbscope/X.Y/ for a platform gem" if releases.empty?
    major, minor = releases.last.segments
    s.required_ruby_version = [">= #{releases.first}", "< #{major}.#{minor + 1}.dev"]
  end
  s.require_paths = ["lib"]
  # Default gems up to Ruby 3.4, bundled gems from 4.0 on: declared so that a Gemfile naming
  # only rbscope works everywhere. Logger: the better-backtrace formatter; irb: restore.
  s.add_dependency "logger"
  s.add_dependency "irb"
end
