# frozen_string_literal: true

# Heap dump analysis (issue [7/11]): `rbscope heap` against a Python `json.loads`-per-line
# counter, side by side in one run, on three synthetic `ObjectSpace.dump_all` dumps of one Ruby
# process (about OBJECTS objects in the first, ~600-800 MB each).
#
# The dumps are generated once by a child Ruby (`--generate`, below) and kept under
# target/bench-heap/OBJECTS/. That process traces allocations (so lines carry file, line,
# method and generation, as in a real leak hunt) and builds a mixed heap: an org tree of app
# objects (accounts, invoices as Structs, line items) with strings, arrays, hashes, floats and
# times, a translations table of strings (many duplicated), and a cache Hash that leaks. Between
# dump 1 and 2 the cache grows by ~100k objects, a session table holds ~30k objects and ~100k
# objects are allocated and dropped; between dump 2 and 3 the sessions go and the cache grows by
# another ~100k objects. A few hundred objects come from code whose file name holds a quote:
# Ruby writes `file` unescaped, so their lines are not valid JSON (as in real dumps).
#
# Measured for each command: wall time (best of RUNS, after one warm-up read of the files so
# they are in the page cache), peak RssAnon (anonymous memory, not the mapped file's pages;
# polled every ~2 ms from /proc/PID/status) and VmHWM for reference. The Python baseline
# (bench/heap_baseline.py) runs once per mode. Exits non-zero only if a command fails.
#
#   ruby bench/heap.rb [OBJECTS] [RUNS]            (needs `cargo build --release -p rbscope`)
#   ruby bench/heap.rb --generate OBJECTS DIR      (only write DIR/1.json, 2.json, 3.json)
require "fileutils"
require "rbconfig"

# ---------------------------------------------------------------------------------------------
# Generator: runs in its own process (ruby bench/heap.rb --generate N DIR).
# ---------------------------------------------------------------------------------------------
module HeapGen
  RELEASE = "/srv/shop/releases/20261201093000"

  # The "app". Each part is evaluated under a realistic file name so allocation sites look like
  # an app's; string literals here are not frozen (no magic comment), as in most app code.
  SOURCES = {
    "app/models/concerns/text.rb" => <<~'RUBY',
      module App
        module Text
          WORDS = %w[invoice customer payment refund order shipping delivery warehouse pending
                     approved declined account balance credit debit subscription renewal trial
                     upgrade downgrade support ticket priority escalated resolved region manager
                     quarterly report export import schedule reminder overdue discount coupon
                     tax vat address billing contact phone notes internal external review].freeze

          def self.sentence(rng, min, max)
            len = min + rng.rand(max - min + 1)
            out = +""
            while out.bytesize < len
              out << WORDS[rng.rand(WORDS.size)] << " "
            end
            out[0, len]
          end
        end
      end
    RUBY
    "app/models/billing/line_item.rb" => <<~'RUBY',
      module App
        module Billing
          class LineItem
            attr_reader :sku, :quantity, :unit_price, :description

            def initialize(n, rng)
              @sku = "SKU-#{format('%05d', n % 2500)}"
              @quantity = 1 + rng.rand(9)
              @unit_price = n % 3 == 0 ? rng.rand * 1.0e-300 : rng.rand * 100
              text = DESCRIPTIONS[n % DESCRIPTIONS.size]
              @description = n.even? ? text.dup : "#{text}" # a shared string, or a copy
            end
          end
        end
      end
    RUBY
    "app/models/billing/invoice.rb" => <<~'RUBY',
      module App
        module Billing
          Invoice = Struct.new(:number, :amount, :lines, :memo, :status) do
            def self.build(account_id, i, rng)
              lines = Array.new(2) { |k| LineItem.new(account_id * 7 + i * 2 + k, rng) }
              memo = i.zero? ? Text.sentence(rng, 20, 200) : nil
              new("INV-#{account_id}-#{i}", rng.rand * 1.0e300, lines, memo, i.even? ? :paid : :open)
            end
          end
        end
      end
    RUBY
    "app/models/billing/account.rb" => <<~'RUBY',
      module App
        module Billing
          class Account
            FIRST = %w[Ada Grace Linus Ken Barbara Donald Edsger Frances Alan Margaret].freeze
            LAST = %w[Lovelace Hopper Torvalds Thompson Liskov Knuth Dijkstra Allen Turing].freeze
            LOCALES = %w[en-US de-DE fr-FR ja-JP pt-BR].freeze
            attr_reader :id, :invoices

            def initialize(id, rng)
              @id = id
              @name = "#{FIRST[id % FIRST.size]} #{LAST[(id / 7) % LAST.size]} #{id}"
              @email = "customer.#{id}@example-#{id % 97}.com"
              @tags = [:active, :"tier_#{id % 4}", :billing]
              @balance = id % 4 == 0 ? rng.rand * 1.0e300 : rng.rand * 1000
              @settings = { "locale" => LOCALES[id % LOCALES.size].dup, "time_zone" => "Europe/Berlin",
                            "plan" => "pro-#{id % 3}", "currency" => "EUR" }
              @notes = Text.sentence(rng, 20, 200)
              @created_at = Time.at(1_700_000_000 + id)
              @invoices = Array.new(3) { |i| Invoice.build(id, i, rng) }
            end
          end
        end
      end
    RUBY
    "app/models/org/team.rb" => <<~'RUBY',
      module App
        module Org
          Region = Struct.new(:name, :departments)
          class Department
            attr_reader :name, :teams, :budget
            def initialize(name)
              @name = name
              @teams = []
              @budget = { "opex" => 1.0e300, "capex" => 2.5e299, "owner" => "finance-#{name}" }
            end
          end
          class Team
            attr_reader :name, :members
            def initialize(name)
              @name = name
              @members = []
              @channel = "##{name.downcase.tr(' ', '-')}"
            end

            def hire(id, rng)
              @members << Billing::Account.new(id, rng)
            end
          end

          # 20 regions of 20 departments of 10 teams; returns the teams.
          def self.seed
            regions = Array.new(20) { |r| Region.new("Region #{r}", []) }
            const_set(:REGIONS, regions)
            departments = Array.new(400) { |d| Department.new("Dept #{d}").tap { |dep| regions[d % 20].departments << dep } }
            Array.new(4000) { |t| Team.new("Team #{t} of #{departments[t % 400].name}").tap { |team| departments[t % 400].teams << team } }
          end
        end
      end
    RUBY
    "config/initializers/i18n.rb" => <<~'RUBY',
      module App
        module I18n
          TRANSLATIONS = {}
          def self.load(count, rng)
            count.times do |i|
              key = "shop.#{%w[checkout cart account admin mailer][i % 5]}.label_#{i}"
              TRANSLATIONS[key] = i % 4 == 0 ? "Please try again later" : Text.sentence(rng, 20, 160)
            end
          end
        end
      end
    RUBY
    "app/services/cache/store.rb" => <<~'RUBY',
      module App
        module Cache
          STORE = {}
          def self.remember(key, rng)
            STORE[key] ||= { "payload" => Text.sentence(rng, 40, 200), "fetched_at" => Time.now,
                             "etag" => "W/\"#{key.hash.abs.to_s(16)}\"", "parts" => [key.dup] }
          end
        end
      end
    RUBY
    "app/controllers/concerns/sessions.rb" => <<~'RUBY',
      module App
        module Sessions
          ACTIVE = {}
          def self.open(id, rng)
            ACTIVE["sess-#{id}"] = ["user-#{id}", Text.sentence(rng, 20, 80)]
          end
        end
      end
    RUBY
    "app/jobs/report_job.rb" => <<~'RUBY',
      module App
        class ReportJob
          def self.perform(n, rng)
            rows = Array.new(n) { |i| [i, "row #{i}", Text.sentence(rng, 20, 100)] }
            rows.size
          end
        end
      end
    RUBY
    # Ruby writes `file` without escaping: objects allocated here make lines that are not JSON.
    'app/views/reports/q4 "final".html.erb' => <<~'RUBY',
      module App
        module LegacyReport
          ROWS = []
          def self.render(n)
            n.times { |i| ROWS << "legacy report row #{i}" }
          end
        end
      end
    RUBY
  }.freeze

  def self.now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  def self.live = GC.stat(:heap_live_slots)

  def self.dump(path)
    GC.start
    t0 = now
    File.open("#{path}.tmp", "w") { |f| ObjectSpace.dump_all(output: f) }
    File.rename("#{path}.tmp", path)
    printf("  %s: %d live objects, %.0f MB, written in %.1f s\n", File.basename(path), live,
           File.size(path) / 1e6, now - t0)
  end

  # Fixed-size parts first, then accounts until the heap holds about `target` objects: the
  # objects one account keeps are measured on a first batch, then the rest built in one go and
  # topped up (building leaves garbage, so live counts are taken after a full GC). Only the
  # app's constants keep what is built (no local of `run` does, so the dominator tree is the
  # app's: regions > departments > teams > accounts).
  def self.build(target, rng)
    App::I18n.load(target / 40, rng)
    App::LegacyReport.render(300)
    teams = App::Org.seed
    id = 0
    hire = ->(n) { n.times { teams[(id * 31) % teams.size].hire(id, rng); id += 1 } }
    GC.start
    before = live
    hire.(1000)
    GC.start
    per_account = (live - before) / 1000.0
    hire.([((target - live) / per_account * 0.98).floor, 0].max)
    loop do
      GC.start
      break if live + 100 * per_account >= target

      hire.(200)
    end
    id
  end

  def self.run(target, dir)
    require "objspace"
    FileUtils.mkdir_p(dir)
    t_start = now
    ObjectSpace.trace_object_allocations_start
    SOURCES.each { |file, src| eval(src, TOPLEVEL_BINDING, "#{RELEASE}/#{file}", 1) } # rubocop:disable Security/Eval
    rng = Random.new(42)
    descriptions = Array.new(2000) { App::Text.sentence(rng, 20, 120).freeze }
    App::Billing.const_set(:DESCRIPTIONS, descriptions.freeze)

    accounts = build(target, rng)
    printf("  built %d accounts in %.1f s\n", accounts, now - t_start)
    dump(File.join(dir, "1.json"))

    # Between 1 and 2: the cache leaks ~100k objects, sessions hold ~30k, ~100k are garbage.
    14_000.times { |i| App::Cache.remember("account:#{i}:profile", rng) }
    7_500.times { |i| App::Sessions.open(i, rng) }
    App::ReportJob.perform(8_000, rng) # ~13 objects a row, all garbage
    dump(File.join(dir, "2.json"))

    # Between 2 and 3: sessions end, the cache leaks another ~100k objects.
    App::Sessions::ACTIVE.clear
    14_000.times { |i| App::Cache.remember("account:#{14_000 + i}:profile", rng) }
    dump(File.join(dir, "3.json"))
    printf("generated in %.1f s\n", now - t_start)
  end
end

if ARGV[0] == "--generate"
  abort "usage: ruby bench/heap.rb --generate OBJECTS DIR" unless ARGV.size == 3
  HeapGen.run(Integer(ARGV[1].delete("_")), ARGV[2])
  exit
end

# ---------------------------------------------------------------------------------------------
# Benchmark: rbscope heap ... against bench/heap_baseline.py on the same dumps.
# ---------------------------------------------------------------------------------------------
require "etc"

Result = Struct.new(:seconds, :rss_anon, :hwm, :status, :out, :err)

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

# Runs argv with stdout and stderr in files: wall time from spawn to exit, and the largest
# RssAnon and VmHWM seen in /proc/PID/status, polled every ~2 ms (bytes).
def measure(argv, out_dir, name)
  out = File.join(out_dir, "#{name}.out")
  err = File.join(out_dir, "#{name}.err")
  t0 = now
  pid = Process.spawn(*argv, out: out, err: err)
  anon = hwm = 0
  status = nil
  loop do
    begin
      text = File.read("/proc/#{pid}/status")
      anon = [anon, text[/^RssAnon:\s+(\d+)/, 1].to_i].max
      hwm = [hwm, text[/^VmHWM:\s+(\d+)/, 1].to_i].max
    rescue Errno::ENOENT, Errno::ESRCH
      nil
    end
    _, status = Process.waitpid2(pid, Process::WNOHANG)
    break if status

    sleep 0.002
  end
  Result.new(now - t0, anon * 1024, hwm * 1024, status, File.read(out), File.read(err))
end

def mb(bytes) = format(bytes < 10e6 ? "%.1f MB" : "%.0f MB", bytes / 1e6)

def times_x(part, whole) = format(part < whole / 100.0 ? "%.3fx" : "%.2fx", part.to_f / whole)

def commas(n) = n.to_i.to_s.reverse.scan(/\d{1,3}/).join(",").reverse

if $PROGRAM_NAME == __FILE__
  objects = Integer(ARGV.fetch(0, "2_000_000").delete("_"))
  runs = Integer(ARGV.fetch(1, "3"))
  root = File.expand_path("..", __dir__)
  cli = File.join(root, "target/release/rbscope")
  abort "build first: cargo build --release -p rbscope" unless File.executable?(cli)
  unless system(cli, "heap", "--help", out: File::NULL, err: File::NULL)
    abort "#{cli} has no `heap` command yet: cargo build --release -p rbscope"
  end
  baseline = File.join(__dir__, "heap_baseline.py")
  dir = File.join(root, "target/bench-heap", objects.to_s)
  dumps = %w[1 2 3].map { |i| File.join(dir, "#{i}.json") }
  out_dir = File.join(dir, "out")
  FileUtils.mkdir_p(out_dir)

  if dumps.all? { |d| File.exist?(d) }
    puts "dumps: #{dir} (generated earlier; delete the directory to generate them again)"
  else
    puts "generating #{commas(objects)} objects into #{dir} ..."
    t0 = now
    system(RbConfig.ruby, __FILE__, "--generate", objects.to_s, dir, exception: true)
    printf("generation took %.1f s\n", now - t0)
  end

  # Warm-up read: every dump once, so each command finds it in the page cache; lines counted.
  lines = dumps.map do |d|
    n = 0
    buf = String.new(capacity: 1 << 24)
    File.open(d, "rb") { |f| n += buf.count("\n") while f.read(1 << 24, buf) }
    n
  end
  sizes = dumps.map { |d| File.size(d) }
  dumps.each_with_index do |d, i|
    puts "#{File.basename(d)}: #{commas(lines[i])} lines, #{mb(sizes[i])} (#{format('%.0f', sizes[i].to_f / lines[i])} bytes a line)"
  end

  load_before = File.read("/proc/loadavg").split.first
  failed = false
  best = lambda do |name, argv, times = runs, &prepare|
    all = Array.new(times) do
      prepare&.call
      r = measure(argv, out_dir, name)
      unless r.status.success?
        warn "FAILED (#{r.status}): #{argv.join(' ')}\n#{r.err}"
        failed = true
      end
      r
    end
    r = all.min_by(&:seconds)
    r.rss_anon = all.map(&:rss_anon).max # the worst run's memory, the best run's time
    r.hwm = all.map(&:hwm).max
    r
  end

  db = File.join(out_dir, "import.db")
  summary = best.("summary", [cli, "heap", "summary", dumps[0]])
  top = best.("top", [cli, "heap", "top", dumps[0]])
  diff = best.("diff", [cli, "heap", "diff", *dumps])
  strings = best.("strings", [cli, "heap", "strings", dumps[0]])
  import = best.("import", [cli, "heap", "import", dumps[0], "--sqlite", db]) { FileUtils.rm_f(Dir["#{db}*"]) }
  py_count = best.("python-count", ["python3", baseline, "count", dumps[0]], 1)
  py_diff = best.("python-diff", ["python3", baseline, "diff", *dumps], 1)

  # Rows imported: the CLI's own figure if it prints one, else counted in the database.
  said = "#{import.out}\n#{import.err}"
  imported = said[/([\d,_]+)\s+rows\b/, 1]&.delete(",_")&.to_i
  if imported.nil? && system("command -v sqlite3 >/dev/null")
    tables = IO.popen(["sqlite3", db, "select name from sqlite_master where type = 'table'"], &:read).split
    imported = tables.sum { |t| IO.popen(["sqlite3", db, "select count(*) from \"#{t}\""], &:read).to_i }
  end
  rows_per_s = said[%r{([\d,_.]+)\s+rows/s}, 1]&.delete(",_")&.to_f

  puts
  puts "heap dump analysis — dump 1: #{commas(lines[0])} lines (#{commas(objects)} objects asked for), " \
       "#{mb(sizes[0])}; dumps 1-3: #{mb(sizes.sum)}; page cache warm; #{Etc.nprocessors} cores"
  puts "rbscope: best time of #{runs} runs, largest RssAnon of them; python: one run; " \
       "load average #{load_before} before, #{File.read('/proc/loadavg').split.first} after"
  puts format("%-20s %9s %7s %-26s %-16s %s", "command", "rbscope", "GB/s", "RssAnon (x input)",
              "VmHWM", "python json.loads  ratio")
  row = lambda do |label, r, input, py = nil|
    cells = format("%-20s %7.2f s %7.2f %-26s %-16s", label, r.seconds, input / r.seconds / 1e9,
                   "#{mb(r.rss_anon)} (#{times_x(r.rss_anon, input)})", mb(r.hwm))
    cells += format(" %7.1f s  %6.0fx faster", py.seconds, py.seconds / r.seconds) if py
    puts cells.rstrip
  end
  row.("summary", summary, sizes[0], py_count)
  row.("top", top, sizes[0])
  row.("diff A B C", diff, sizes.sum, py_diff)
  row.("strings", strings, sizes[0])
  row.("import --sqlite", import, sizes[0])
  rate = rows_per_s || (imported && imported / import.seconds)
  puts format("%-20s %s rows, %s rows/s%s; database %s", "", commas(imported || 0), commas(rate || 0),
              rows_per_s ? " (the CLI's figure)" : " (rows / wall time)", File.exist?(db) ? mb(File.size(db)) : "missing")
  puts format("%-20s python: summary-like count RssAnon %s, diff RssAnon %s", "", mb(py_count.rss_anon), mb(py_diff.rss_anon))

  puts
  check = lambda do |ok, text|
    puts "#{ok ? 'PASS' : 'FAIL'}  #{text}"
  end
  check.(sizes[0] / summary.seconds >= 1e9, format("summary at least 1 GB/s: %.2f GB/s", sizes[0] / summary.seconds / 1e9))
  check.(summary.rss_anon < sizes[0] / 2, "summary RssAnon under 0.5x the file: #{times_x(summary.rss_anon, sizes[0])}")
  check.(top.seconds < 2, format("top under 2 s: %.2f s", top.seconds))
  check.(top.rss_anon < sizes[0], "top RssAnon under the file size: #{times_x(top.rss_anon, sizes[0])}")
  check.(diff.seconds < 3, format("diff of three dumps under 3 s: %.2f s", diff.seconds))
  puts "(outputs of the last run of each command: #{out_dir})"
  exit(failed ? 1 : 0)
end
