# frozen_string_literal: true

require_relative "lib/rbscope/version"

Gem::Specification.new do |s|
  s.name = "rbscope"
  s.version = Rbscope::VERSION
  s.summary = "A production debugger for Ruby: exception snapshots, better backtraces, live attach, heap analysis"
  s.description = "rbscope captures self, locals and the objects they reach for every app frame of a " \
                  "reported exception, stores them in SQLite, and lets you browse them later. " \
                  "The agent is a Rust native extension built with cargo."
  s.authors = ["rbscope developers"]
  s.license = "MIT"
  s.required_ruby_version = ">= 3.1"
  s.files = Dir["lib/**/*.rb", "exe/*", "ext/rbscope/extconf.rb", "ext/rbscope/rust/**/*"]
            .reject { |f| f.include?("/target/") }
  s.bindir = "exe"
  s.executables = ["rbscope"]
  s.extensions = ["ext/rbscope/extconf.rb"]
  s.require_paths = ["lib"]
  # Default gems up to Ruby 3.4, bundled gems from 4.0 on: declared so that a Gemfile naming
  # only rbscope works everywhere. Logger: the better-backtrace formatter; irb: restore.
  s.add_dependency "logger"
  s.add_dependency "irb"
end
