# frozen_string_literal: true

# Does tracing leave a YJIT app slower after the trace ends? (docs/PERFORMANCE.md, "YJIT and
# tracing".) The app computes fib(27) in rounds under --yjit with rbscope started; the bench
# times rounds before any trace, attaches `rbscope trace -m 'Work#side' --for 2s` (a method
# hook, what needs --force on Ruby 3.1), and times rounds again once the trace has detached.
# Prints the ratio after/before per Ruby; 1.00x means no lasting slowdown.
#
#   ruby bench/yjit_trace.rb [CLI]        (the ruby that runs it is the one measured)
require "rbconfig"
require "tmpdir"
require "open3"

root = File.expand_path("..", __dir__)
cli = ARGV.fetch(0, File.join(root, "target/release/rbscope"))
app = <<~RUBY
  require "rbscope"
  Rbscope.start
  class Work
    def fib(n) = n < 2 ? n : fib(n - 1) + fib(n - 2)
    def side = :side
  end
  w = Work.new
  $stdout.sync = true
  puts "ready"
  while (line = $stdin.gets)
    rounds = Integer(line)
    t0 = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
    rounds.times { w.fib(27); w.side }
    puts Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - t0
  end
RUBY

Dir.mktmpdir do |dir|
  env = { "RBSCOPE_STORE" => File.join(dir, "s.db"), "XDG_RUNTIME_DIR" => dir, "RUBYOPT" => nil }
  script = File.join(dir, "app.rb")
  File.write(script, app)
  Open3.popen2(env, RbConfig.ruby, "--yjit", "-I#{root}/gem/lib", script) do |stdin, stdout, wait|
    abort "app did not start" unless stdout.gets&.strip == "ready"
    round = lambda do
      stdin.puts 5
      Float(stdout.gets)
    end
    3.times { round.call } # YJIT compiles here
    before = Array.new(5) { round.call }.min
    force = RUBY_VERSION.start_with?("3.1.") ? ["--force"] : [] # refused on 3.1 without it
    out, status = Open3.capture2e(env, cli, "trace", "-p", wait.pid.to_s, "-m", "Work#side",
                                  "--for", "2s", *force)
    abort "trace failed: #{out}" unless status.success?
    after = Array.new(5) { round.call }.min
    stdin.close
    puts format("Ruby %s --yjit: fib rounds %.3fs before a trace, %.3fs after it detached: %.2fx",
                RUBY_VERSION, before, after, after / before)
  end
end
