# frozen_string_literal: true

# The soak and fault run of issue [11/11]; start it with scripts/soak (which builds rbscope
# first). Runs as root on Debian with the packages of scripts/install-deps.
#
# Two puma clusters serve the Rails 6.1 app of examples/soak/app on loopback:
#   pg    2 workers, app preloaded in the master; snapshots go to a throwaway PostgreSQL
#         cluster (the fleet store), which is stopped and restarted now and then;
#   disk  1 worker, app loaded by the worker; snapshots go to a SQLite store on a small
#         tmpfs that is filled to the last byte now and then.
# A baseline phase (RBSCOPE_DISABLE=1, no clients, no faults) and an rbscope phase of the same
# length run the same load (examples/soak/load.rb); during the rbscope phase a client loop
# attaches to random workers (ps, trace with selectors, firehose, eval, stacks, heap count,
# forked heap dump, memory) and kills clients with SIGKILL at random moments. Then every
# failing request's id is looked up in the stores, and a report is written.
require "etc"
require "fileutils"
require "json"
require "net/http"
require "optparse"
require "socket"
require "tmpdir"

ROOT = File.expand_path("../..", __dir__)
HERE = __dir__

def now = Process.clock_gettime(Process::CLOCK_REALTIME)

# Nearest-rank percentile of a sorted array.
def pct(sorted, p)
  return nil if sorted.empty?

  sorted[[(p / 100.0 * sorted.size).ceil - 1, 0].max]
end

# Least-squares slope of ys over xs.
def slope(xs, ys)
  n = xs.size
  return nil if n < 3

  mx = xs.sum / n
  my = ys.sum / n
  den = xs.sum { |x| (x - mx)**2 }
  return nil if den.zero?

  xs.zip(ys).sum { |x, y| (x - mx) * (y - my) } / den
end

def ms(seconds) = seconds.nil? ? "-" : format("%.1f ms", seconds * 1000)

# Process facts from /proc.
module Procfs
  module_function

  # [pid, state, ppid] of every process.
  def table
    Dir.children("/proc").filter_map do |d|
      next unless d.match?(/\A\d+\z/)

      stat = File.read("/proc/#{d}/stat") rescue next
      rest = stat[(stat.rindex(")") + 2)..].split
      [d.to_i, rest[0], rest[1].to_i]
    end
  end

  def children(pid, table = self.table) = table.select { |_, _, pp| pp == pid }

  def cmdline(pid) = (File.read("/proc/#{pid}/cmdline").tr("\0", " ").strip rescue "")

  def rss_kb(pid)
    File.foreach("/proc/#{pid}/status") { |l| return l.split[1].to_i if l.start_with?("VmRSS:") }
    nil
  rescue SystemCallError
    nil
  end

  def alive?(pid) = File.exist?("/proc/#{pid}")
end

# One puma cluster serving the soak app.
class Cluster
  attr_reader :name, :dir, :port, :workers, :preload, :store, :master, :log_path

  def initialize(name:, dir:, workers:, preload:, store:)
    @name = name
    @dir = dir
    @workers = workers
    @preload = preload
    @store = store
  end

  def start(soak, phase, disabled:)
    @port = soak.free_port
    @log_path = File.join(soak.work, "puma-#{phase}-#{name}.log")
    env = {
      "SOAK_PORT" => port.to_s, "SOAK_WORKERS" => workers.to_s, "SOAK_PRELOAD" => preload ? "1" : "0",
      "RAILS_ENV" => "production", "RBSCOPE_STORE" => store, "RBSCOPE_STORE_KEY" => soak.key_file,
      "XDG_RUNTIME_DIR" => soak.run_dir, "RBSCOPE_DISABLE" => disabled ? "1" : nil, "RUBYOPT" => nil,
      "RBSCOPE_RUBY_LIB" => nil
    }
    @master = Process.spawn(env, "ruby", "-I#{soak.gemlib}", "/usr/bin/puma", "-C", "config/puma.rb", "config.ru",
                            chdir: dir, in: File::NULL, out: [log_path, "w"], err: [:child, :out], pgroup: true,
                            rlimit_core: Process::RLIM_INFINITY)
    soak.log("#{name}: puma master #{master} on port #{port} (#{workers} worker(s), " \
             "#{preload ? 'app preloaded' : 'app loaded by each worker'}, #{disabled ? 'RBSCOPE_DISABLE=1' : "store #{store}"})")
    wait_ready
  end

  def wait_ready(timeout = 120)
    deadline = now + timeout
    loop do
      raise "#{name}: puma exited while starting; see #{log_path}" if Process.wait(master, Process::WNOHANG)

      if worker_pids.size == workers && booted_lines >= workers
        ok = (1..workers * 3).count do
          Net::HTTP.get_response(URI("http://127.0.0.1:#{port}/items?page=1")).code == "200"
        rescue StandardError
          false
        end
        return if ok == workers * 3
      end
      raise "#{name}: puma did not get ready within #{timeout} s; see #{log_path}" if now > deadline

      sleep 0.5
    end
  end

  def booted_lines = File.read(log_path).scan(/Worker \d+ \(PID: \d+\) booted/).size

  # The workers: children of the master whose command line says so.
  def worker_pids(table = Procfs.table)
    return [] unless master

    Procfs.children(master, table).map(&:first).select { |pid| Procfs.cmdline(pid).include?("cluster worker") }.sort
  end

  # Graceful stop (workers finish their requests; the agents flush at exit); then the group.
  def stop(timeout = 60)
    return unless master

    Process.kill("TERM", master) rescue nil
    deadline = now + timeout
    until Process.wait(master, Process::WNOHANG)
      if now > deadline
        Process.kill("KILL", -master) rescue nil
        Process.wait(master) rescue nil
        break
      end
      sleep 0.2
    end
  rescue Errno::ECHILD
    nil
  ensure
    # Anything of its group still there (a worker the master lost).
    Process.kill("KILL", -master) rescue nil if master
    @master = nil
  end
end

class Soak
  attr_reader :work, :gemlib, :key_file, :run_dir, :opts

  def initialize(opts)
    @opts = opts
    @seconds = (opts[:minutes] * 60).round
    @rng = Random.new(opts[:seed])
    @client_rng = Random.new(opts[:seed] + 1)
    @fault_rng = { pg: Random.new(opts[:seed] + 2), disk: Random.new(opts[:seed] + 3) }
    @lock = Mutex.new
    @ops = []               # client operations
    @faults = []            # {kind:, mode:, t0:, t1:}
    @rss = Hash.new { |h, k| h[k] = [] } # [phase, group, role, pid] => [[t, kb]]
    @vm_mem = Hash.new { |h, k| h[k] = [] } # [group, pid] => [[t, figures]] (rbscope memory)
    @worker_changes = []    # workers that died: [t, phase, group, pid]
    @zombies_max = Hash.new(0)
    @cleanups = []
    @counters = {}          # final agent counters per worker
  end

  # --- small helpers --------------------------------------------------------------------

  def log(msg)
    line = "[soak #{Time.now.strftime('%H:%M:%S')}] #{msg}"
    warn line
    @lock.synchronize { File.write(File.join(work, "soak.log"), "#{line}\n", mode: "a") } if work
  end

  def free_port
    s = TCPServer.new("127.0.0.1", 0)
    s.addr[1]
  ensure
    s&.close
  end

  def sh!(*cmd, **kw)
    system(*cmd, **kw) or raise "command failed (#{$?.exitstatus}): #{cmd.join(' ')}"
  end

  def as_pg(*cmd) = ["runuser", "-u", "postgres", "--", *cmd]

  def pg_bin
    @pg_bin ||= Dir["/usr/lib/postgresql/*/bin"].select { |b| File.executable?("#{b}/initdb") }
                                                 .max_by { |b| b[%r{/(\d+)/bin}, 1].to_i } or
                abort "soak: the PostgreSQL server is not installed: run scripts/install-deps"
  end

  # Runs the CLI; returns {rc:, out:, err:, secs:, timed_out:}.
  def cli(args, timeout: 60, env: {})
    n = @lock.synchronize { @cli_n = (@cli_n || 0) + 1 }
    base = File.join(work, "clients", "cli-#{n}")
    t0 = now
    pid = Process.spawn({ "RBSCOPE_RUBY_LIB" => gemlib, "RBSCOPE_STORE" => nil }.merge(env), opts[:cli], *args,
                        in: File::NULL, out: "#{base}.out", err: "#{base}.err", pgroup: true)
    timed_out = false
    status = nil
    loop do
      _, status = Process.wait2(pid, Process::WNOHANG)
      break if status

      if now - t0 > timeout
        timed_out = true
        Process.kill("KILL", -pid) rescue nil
        _, status = Process.wait2(pid)
        break
      end
      sleep 0.02
    end
    out = File.read("#{base}.out") rescue ""
    err = File.read("#{base}.err") rescue ""
    File.delete("#{base}.out", "#{base}.err") rescue nil
    { rc: status&.exitstatus, out: out, err: err, secs: now - t0, timed_out: timed_out }
  end

  # --- setup and cleanup ----------------------------------------------------------------

  def setup
    abort "soak: run as root (it mounts a tmpfs and runs PostgreSQL as the postgres user)" unless Process.uid.zero?
    abort "soak: /usr/bin/puma is missing: run scripts/install-deps" unless File.exist?("/usr/bin/puma")
    %i[cli agent].each { |k| abort "soak: #{opts[k]} is missing (scripts/soak builds it)" unless File.file?(opts[k].to_s) }
    Etc.getpwnam("postgres") rescue abort("soak: no postgres user: run scripts/install-deps")

    @work = Dir.mktmpdir("rbscope-soak-")
    File.chmod(0o755, work)
    @cleanups << lambda {
      # Never while the tmpfs is still mounted in it.
      FileUtils.rm_rf(work) unless opts[:keep] || system("mountpoint", "-q", File.join(work, "disk"))
    }
    log "work directory #{work}#{opts[:keep] ? ' (kept)' : ''}; seed #{opts[:seed]}"
    %w[clients dumps].each { |d| FileUtils.mkdir_p(File.join(work, d)) }
    @run_dir = File.join(work, "run")
    Dir.mkdir(run_dir, 0o700)

    # The gem's Ruby files with the agent just built.
    @gemlib = File.join(work, "gemlib")
    FileUtils.cp_r(File.join(ROOT, "gem", "lib"), gemlib)
    FileUtils.rm_f(File.join(gemlib, "rbscope", "rbscope-cli"))
    FileUtils.cp(opts[:agent], File.join(gemlib, "rbscope", "rbscope_agent.so"))

    @key_file = File.join(work, "store.key")
    r = cli(["key", "new", key_file])
    raise "rbscope key new failed: #{r[:err]}" unless r[:rc].zero?

    start_postgres
    mount_tmpfs

    @clusters = [
      Cluster.new(name: "pg", dir: app_copy("app-pg"), workers: 2, preload: true, store: @pg_url),
      Cluster.new(name: "disk", dir: app_copy("app-disk"), workers: 1, preload: false,
                  store: File.join(@disk_dir, "snapshots.db")),
    ]
    @cleanups << -> { @clusters.each(&:stop) }
  end

  def app_copy(name)
    dir = File.join(work, name)
    FileUtils.cp_r(File.join(HERE, "app"), dir)
    out = IO.popen({ "RBSCOPE_DISABLE" => "1", "RAILS_ENV" => "production", "RUBYOPT" => nil },
                   ["ruby", "-I#{gemlib}", "db/setup.rb"], chdir: dir, err: [:child, :out], &:read)
    raise "#{name}: db/setup.rb failed: #{out}" unless $?.success? && out.strip.end_with?("2000")

    dir
  end

  def start_postgres
    @pg_dir = File.join(work, "pg")
    Dir.mkdir(@pg_dir, 0o700)
    FileUtils.chown("postgres", "postgres", @pg_dir)
    @pg_port = free_port
    sh!(*as_pg("#{pg_bin}/initdb", "-D", "#{@pg_dir}/data", "-U", "rbscope", "-A", "trust", "-E", "UTF8",
               "--locale=C.UTF-8", "--no-sync"), out: File::NULL, err: File::NULL)
    @cleanups << -> { pg_ctl_stop("immediate") if pg_running? }
    pg_start
    sh!("#{pg_bin}/psql", "-q", "-h", "127.0.0.1", "-p", @pg_port.to_s, "-U", "rbscope", "-d", "postgres",
        "-c", "CREATE DATABASE soak", out: File::NULL)
    @pg_url = "postgres://rbscope@127.0.0.1:#{@pg_port}/soak"
    log "PostgreSQL #{File.basename(File.dirname(pg_bin))} on port #{@pg_port}: #{@pg_url}"
  end

  def pg_start
    sh!(*as_pg("#{pg_bin}/pg_ctl", "-D", "#{@pg_dir}/data", "-l", "#{@pg_dir}/server.log", "-w", "-t", "60",
               "-o", "-p #{@pg_port} -k #{@pg_dir} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off",
               "start"), out: File::NULL)
  end

  def pg_ctl_stop(mode)
    system(*as_pg("#{pg_bin}/pg_ctl", "-D", "#{@pg_dir}/data", "-m", mode, "-w", "-t", "60", "stop"),
           out: File::NULL, err: File::NULL)
  end

  def pg_running?
    system(*as_pg("#{pg_bin}/pg_ctl", "-D", "#{@pg_dir}/data", "status"), out: File::NULL, err: File::NULL)
  end

  def mount_tmpfs
    @disk_dir = File.join(work, "disk")
    Dir.mkdir(@disk_dir)
    sh!("mount", "-t", "tmpfs", "-o", "size=#{opts[:disk_mb]}m,mode=0755", "rbscope-soak", @disk_dir)
    @cleanups << lambda {
      system("umount", @disk_dir, err: File::NULL) || system("umount", "-l", @disk_dir)
    }
    log "SQLite store on a #{opts[:disk_mb]} MiB tmpfs at #{@disk_dir}"
  end

  def cleanup
    @stop_all = true
    @stop_sampler = true
    [@client_thread, @pg_thread, @disk_thread, @sampler].compact.each { |t| t.join(30) || t.kill }
    Process.kill("TERM", @load_pid) rescue nil if @load_pid
    @cleanups.reverse_each do |c|
      c.call
    rescue StandardError => e
      warn "soak: cleanup step failed: #{e.message}"
    end
  end

  # --- the phases -----------------------------------------------------------------------

  def run
    setup
    if opts[:baseline]
      run_phase("baseline", rbscope: false)
    else
      log "baseline phase skipped (--no-baseline)"
    end
    run_phase("rbscope", rbscope: true)
    analyse
  ensure
    cleanup
  end

  def load_args(prefix, seconds, out)
    targets = @clusters.map { |c| "--target=#{c.name}=127.0.0.1:#{c.port}:#{c.name == 'pg' ? 0.75 : 0.25}" }
    ["ruby", File.join(HERE, "load.rb"), *targets, "--rate=#{opts[:rate]}", "--seconds=#{seconds}",
     "--threads=#{opts[:load_threads]}", "--fail-share=#{opts[:fail_share]}", "--prefix=#{prefix}", "--seed=#{@rng.rand(1 << 30)}", "--out=#{out}"]
  end

  def run_load(prefix, seconds, out)
    @load_pid = Process.spawn({ "RUBYOPT" => nil }, *load_args(prefix, seconds, out), in: File::NULL)
    Process.wait(@load_pid)
    @load_pid = nil
    raise "the load generator failed (#{$?.exitstatus})" unless $?.success?
  end

  def run_phase(phase, rbscope:)
    @phase = phase
    log "== #{phase} phase: #{@seconds} s at #{opts[:rate]} req/s#{rbscope ? ', with clients and faults' : ', RBSCOPE_DISABLE=1'}"
    @clusters.each { |c| c.start(self, phase, disabled: !rbscope) }
    @initial_workers = @clusters.to_h { |c| [c.name, c.worker_pids] }
    log "workers: #{@initial_workers.map { |k, v| "#{k} #{v.join(',')}" }.join('; ')}"
    log "warm-up: #{opts[:warmup]} s of load (counted, not in the latency figures)"
    @stop_sampler = false
    @sampler = Thread.new { sampler }
    run_load("warmup-#{phase}", opts[:warmup], File.join(work, "requests-#{phase}-warmup.tsv"))
    @phase_start = now
    if rbscope
      @stop_all = false
      @client_thread = Thread.new { client_loop } if opts[:clients]
      if opts[:faults]
        @pg_thread = Thread.new { fault_loop(:pg) }
        @disk_thread = Thread.new { fault_loop(:disk) }
      end
    end
    run_load(phase, @seconds, File.join(work, "requests-#{phase}.tsv"))
    @phase_end = now
    (@phase_windows ||= {})[phase] = [@phase_start, @phase_end]
    if rbscope
      log "load done; stopping the client loop and the faults"
      @stop_all = true
      [@client_thread, @pg_thread, @disk_thread].compact.each { |t| t.join(120) || (log("a loop did not stop; killed") && t.kill) }
      @pg_running_at_end = pg_running?
      pg_start unless @pg_running_at_end
      drain
      sweep_dumps(final: true)
    end
    @stop_sampler = true
    @sampler.join(30)
    @stopping = true
    @clusters.each(&:stop)
    @stopping = false
    @clusters.each { |c| scan_log(phase, c) }
    log "#{phase} phase done"
  end

  # --- watching the workers -------------------------------------------------------------

  def sampler
    last = @clusters.to_h { |c| [c.name, c.worker_pids] }
    tick = 0
    until @stop_sampler
      table = Procfs.table
      @clusters.each do |c|
        pids = c.worker_pids(table)
        gone = last[c.name] - pids
        new = pids - last[c.name]
        unless @stopping
          gone.each { |p| @lock.synchronize { @worker_changes << [now, @phase, c.name, p] } }
          (gone + new).each { |p| log "#{c.name}: worker change: #{gone.include?(p) ? 'gone' : 'new'} #{p}" }
        end
        last[c.name] = pids unless pids.empty?
        pids.each do |p|
          z = Procfs.children(p, table).count { |_, state, _| state == "Z" }
          key = [@phase, c.name, p]
          @zombies_max[key] = z if z > @zombies_max[key]
        end
        next unless (tick % 10).zero?

        t = now
        pids.each { |p| (kb = Procfs.rss_kb(p)) && @rss[[@phase, c.name, "worker", p]] << [t, kb] }
        (kb = Procfs.rss_kb(c.master)) && @rss[[@phase, c.name, "master", c.master]] << [t, kb] if c.master
        # Where a worker's memory is, every 30 s, from its agent.
        pids.each { |p| vm_memory(c.name, p) } if @phase == "rbscope" && (tick % 30).zero?
      end
      tick += 1
      sleep 1
    end
  rescue StandardError => e
    log "sampler failed: #{e.class}: #{e.message}"
  end

  def vm_memory(group, pid)
    r = cli(["memory", "-p", pid.to_s, "--json"], timeout: 20)
    return unless r[:rc]&.zero?

    j = JSON.parse(r[:out])
    vm = j["vm"] || j # the agent's figures sit beside the kernel's
    gc = vm["gc"].to_h
    m = vm["malloc"].to_h
    @vm_mem[[group, pid]] << [now, {
      rss: j["kernel"].to_h["VmRSS"].to_i, heap: gc["heap_allocated_pages"].to_i * vm["heap_page_bytes"].to_i,
      malloc: m["in_use_bytes"].to_i + m["mmapped_bytes"].to_i, malloc_free: m["free_bytes"].to_i,
      threads: vm["threads"].to_i, live: gc["heap_live_slots"].to_i
    }]
  rescue StandardError => e
    log "rbscope memory -p #{pid}: #{e.message}"
  end

  CRASH_PATTERNS = /\[BUG\]|panicked|Segmentation fault|SIGSEGV|SIGBUS|SIGABRT|core dumped|double free|corrupted|malloc\(\)|free\(\): |Terminating timed out worker|Worker \d+ \(PID: \d+\) died/

  def scan_log(phase, cluster)
    text = File.read(cluster.log_path, mode: "rb").force_encoding("UTF-8").scrub
    (@crash_lines ||= []).concat(text.lines.grep(CRASH_PATTERNS).map { |l| "#{phase}/#{cluster.name}: #{l.strip[0, 300]}" })
    booted = text.scan(/Worker \d+ \(PID: \d+\) booted/).size
    if booted > cluster.workers
      (@crash_lines ||= []) << "#{phase}/#{cluster.name}: #{booted - cluster.workers} worker boot(s) beyond the first #{cluster.workers}"
    end
    (@rbscope_lines ||= Hash.new(0))
    text.each_line do |l|
      next unless l.start_with?("[rbscope]")

      kind = l[/\A\[rbscope\] (snapshot not stored|snapshot \S+ stored|warning)/, 1]
      kind = "snapshot stored" if kind&.match?(/\Asnapshot \S+ stored/) && kind != "snapshot not stored"
      @rbscope_lines["#{phase}/#{cluster.name}: #{kind || l[0, 60].strip}"] += 1
    end
    @log_tails ||= {}
    @log_tails["#{phase}/#{cluster.name}"] = text.lines.reject { |l| l.start_with?("[rbscope] snapshot ") }.last(5)
    cores = Dir[File.join(cluster.dir, "core*")]
    (@cores ||= []).concat(cores)
  end

  # --- faults ---------------------------------------------------------------------------

  # PostgreSQL stops (fast or immediate shutdown) and restarts; the tmpfs fills to the last
  # byte and is freed. Each every ~1/6 of the phase (25-100 s), down or full for 5-20 s, the
  # two kinds out of step; none starts in the last 30 s.
  def fault_loop(kind)
    period = (@seconds / 6.0).clamp(25.0, 100.0)
    rng = @fault_rng[kind]
    t = @phase_start + (kind == :pg ? 0.3 : 0.75) * period + rng.rand(0.0..5.0)
    n = 0
    until @stop_all
      sleep 0.2 while now < t && !@stop_all
      break if @stop_all || now > @phase_start + @seconds - 30

      n += 1
      hold = rng.rand(5.0..[20.0, period / 2].min)
      kind == :pg ? pg_outage(n, hold) : disk_full(n, hold)
      t += period + rng.rand(-5.0..5.0)
    end
  rescue StandardError => e
    log "fault loop #{kind} failed: #{e.class}: #{e.message}"
    @fault_loop_error = "#{kind}: #{e.message}"
  end

  def pg_outage(n, hold)
    mode = n.odd? ? "fast" : "immediate"
    t0 = now
    ok = pg_ctl_stop(mode)
    log "PostgreSQL stopped (#{mode}#{ok ? '' : ', pg_ctl said it failed'}) for #{hold.round(1)} s"
    sleep hold
    begin
      pg_start
    rescue StandardError
      log "PostgreSQL did not start; trying again"
      sleep 2
      pg_start
    end
    t1 = now
    @lock.synchronize { @faults << { kind: :pg, mode: mode, t0: t0, t1: t1 } }
    log "PostgreSQL is back after #{(t1 - t0).round(1)} s"
  end

  def disk_full(_n, hold)
    filler = File.join(@disk_dir, "filler")
    t0 = now
    written = 0
    File.open(filler, "wb") do |f|
      # Unbuffered writes, 1 MiB then a page at a time, until not one byte more fits.
      [1 << 20, 4096, 1].each do |size|
        chunk = "\0" * size
        loop { written += f.syswrite(chunk) }
      rescue Errno::ENOSPC
        next
      end
    end
    free = `stat -f -c '%a %S' #{@disk_dir}`.split.map(&:to_i).reduce(:*)
    log "the store's disk is full (#{(written / 1048576.0).round(1)} MiB of filler, #{free} bytes free) for #{hold.round(1)} s"
    sleep hold
    File.delete(filler)
    t1 = now
    @lock.synchronize { @faults << { kind: :disk, mode: "full", t0: t0, t1: t1, filler: written, free: free } }
    log "the store's disk has room again"
  rescue StandardError
    File.delete(filler) rescue nil
    raise
  end

  # --- the client loop ------------------------------------------------------------------

  def record_op(kind, group, pid, t0, ok, detail = nil, secs: nil)
    op = { kind: kind, group: group, pid: pid, t0: t0, t1: t0 + (secs || now - t0), ok: ok, detail: detail }
    @lock.synchronize { @ops << op }
    log "client #{kind} on #{group} #{pid} FAILED: #{detail.to_s[0, 300]}" unless ok
    ok
  end

  # Runs the CLI and records it as one operation; the block checks the output (true when
  # right, or a string saying what is wrong).
  def op(kind, group, pid, args, timeout: 60)
    t0 = now
    r = cli(args, timeout: timeout)
    verdict =
      if r[:timed_out] then "no answer within #{timeout} s (killed)"
      elsif r[:rc] != 0 then "exit #{r[:rc].inspect}: #{r[:err].strip.lines.last(3).join(' | ')}"
      else
        begin
          yield(r)
        rescue StandardError => e
          "checking its output failed: #{e.class}: #{e.message}"
        end
      end
    record_op(kind, group, pid, t0, verdict == true, verdict == true ? nil : verdict, secs: r[:secs])
    [verdict == true, r]
  end

  def doctor_counters(pid)
    r = cli(["doctor", "-p", pid.to_s, "--store", File.join(work, "no-store.db")], timeout: 30)
    return nil unless r[:rc]&.zero?

    section = r[:out].split(/^counters$/, 2)[1] or return nil
    section.lines.to_h { |l| k, v = l.split; [k, v.to_i] }
  end

  def pick_worker
    c = @client_rng.rand < 0.67 ? @clusters[0] : @clusters[1]
    pid = c.worker_pids.sample(random: @client_rng)
    [c, pid]
  end

  def client_loop
    i = 0
    until @stop_all
      i += 1
      c, pid = pick_worker
      next sleep(0.5) unless pid

      client_round(i, c.name, pid)
      kill_round(i, c.name, pid) unless @stop_all
      sweep_dumps
      sleep @client_rng.rand(0.5..2.0)
    end
  rescue StandardError => e
    log "client loop failed: #{e.class}: #{e.message}\n#{e.backtrace.first(5).join("\n")}"
    @client_loop_error = e.message
  end

  def all_worker_pids = @clusters.flat_map(&:worker_pids)

  def client_round(i, g, pid)
    steps = [
      lambda {
        op(:ps, g, pid, %w[ps --json]) do |r|
          listed = JSON.parse(r[:out]).to_h { |p| [p["pid"], p["agent"]] }
          missing = all_worker_pids.reject { |w| listed[w].to_s.start_with?("agent") }
          missing.empty? || "workers not listed with an agent: #{missing.join(', ')}"
        end
      },
      lambda {
        out = File.join(work, "clients", "trace-#{i}.txt")
        op(:trace_selector, g, pid, ["trace", "-p", pid.to_s, "-m", "Item.page_of(page)", "-m", "ItemsController#index",
                                     "--for", "2s", "-o", out]) do |r|
          text = File.read(out)
          if !r[:err].include?("*** attached") || !r[:err].include?("*** detached") then "no attach/detach lines: #{r[:err]}"
          elsif !text.match?(/Item\.page_of\(page=\d+\)/) then "no Item.page_of(page=N) call traced in 2 s: #{text[0, 200]}"
          else true
          end
        ensure
          File.delete(out) rescue nil
        end
      },
      lambda {
        out = File.join(work, "clients", "firehose-#{i}.jsonl")
        op(:trace_firehose, g, pid, ["trace", "-p", pid.to_s, "-f", "--for", "1s", "-o", out, "--format", "jsonl"]) do |r|
          lines = File.foreach(out).first(3)
          if !r[:err].include?("*** detached") then "no detach line: #{r[:err]}"
          elsif lines.empty? then "no event in 1 s of firehose"
          else
            JSON.parse(lines.first)
            true
          end
        ensure
          File.delete(out) rescue nil
        end
      },
      lambda {
        op(:eval, g, pid, ["eval", "-p", pid.to_s, "[Item.count, Process.pid]"]) do |r|
          r[:out].strip == "[2000, #{pid}]" || "unexpected result #{r[:out].strip[0, 200]}"
        end
      },
      lambda {
        op(:stacks, g, pid, ["stacks", "-p", pid.to_s]) do |r|
          if !r[:out].include?("puma srv tp") then "no puma thread in the stacks: #{r[:out][0, 200]}"
          elsif !r[:out].include?("through its agent")
            @lock.synchronize { @stacks_outside = (@stacks_outside || 0) + 1 }
            true # answered from outside (the agent was busy): right, but counted
          else true
          end
        end
      },
      lambda {
        op(:heap_count, g, pid, ["heap", "count", "-p", pid.to_s, "--json"]) do |r|
          j = JSON.parse(r[:out])
          j["by_type"].is_a?(Array) && j["by_type"].any? || "no by_type in #{r[:out][0, 200]}"
        end
      },
      lambda {
        file = File.join(work, "dumps", "dump-#{i}.json")
        op(:heap_dump, g, pid, ["heap", "dump", "-p", pid.to_s, "-o", file], timeout: 120) do |_r|
          if !File.file?(file) then "no dump file"
          else
            # Read whole (no --allow-truncated): a cut-off dump fails here.
            s = cli(["heap", "summary", file, "--json"], timeout: 120)
            if s[:rc]&.zero? then JSON.parse(s[:out]) && true
            else "the dump is not complete: #{s[:err].strip[0, 200]}"
            end
          end
        ensure
          File.delete(file) rescue nil
        end
      },
      lambda {
        op(:memory, g, pid, ["memory", "-p", pid.to_s, "--json"]) do |r|
          JSON.parse(r[:out])["pid"] == pid || "wrong pid in #{r[:out][0, 100]}"
        end
      },
    ]
    steps.each do |s|
      break if @stop_all || !Procfs.alive?(pid)

      s.call
    end
  end

  KILLABLE = %i[trace_firehose trace_selector eval heap_dump stacks heap_count].freeze

  # Starts a client, SIGKILLs it at a random moment, then checks that the agent let go of it
  # (no trace hooks left, no eval thread left) and that the next client attaches.
  def kill_round(i, g, pid)
    kind = KILLABLE.sample(random: @client_rng)
    args =
      case kind
      when :trace_firehose then ["trace", "-p", pid.to_s, "-f", "-o", File.join(work, "clients", "killed-#{i}.txt")]
      when :trace_selector
        ["trace", "-p", pid.to_s, "-m", "Item.page_of(page)", "-m", "Item#summary(self)", "-o",
         File.join(work, "clients", "killed-#{i}.txt")]
      when :eval then ["eval", "-p", pid.to_s, "sleep 3; :slept"]
      when :heap_dump then ["heap", "dump", "-p", pid.to_s, "-o", File.join(work, "dumps", "killed-#{i}.json")]
      when :stacks then ["stacks", "-p", pid.to_s]
      when :heap_count then ["heap", "count", "-p", pid.to_s]
      end
    # Long-running clients are killed anywhere in their run; quick ones within their first
    # milliseconds (connecting, waiting for the agent, receiving).
    delay = case kind
            when :heap_dump then @client_rng.rand(0.0..0.3)
            when :stacks, :heap_count then @client_rng.rand(0.0..0.03)
            else @client_rng.rand(0.05..2.5)
            end
    t0 = now
    cpid = Process.spawn({ "RBSCOPE_RUBY_LIB" => gemlib }, opts[:cli], *args, in: File::NULL, out: File::NULL,
                         err: File::NULL)
    sleep delay
    Process.kill("KILL", cpid) rescue nil
    _, st = Process.wait2(cpid)
    killed = st.signaled?
    @lock.synchronize { (@kills ||= Hash.new { |h, k| h[k] = [0, 0] })[kind][killed ? 0 : 1] += 1 }
    File.delete(File.join(work, "clients", "killed-#{i}.txt")) rescue nil

    # The agent lets go: no trace left active...
    t = now
    active = nil
    loop do
      c = doctor_counters(pid)
      active = c && c["traces_active"]
      break if active&.zero? || now - t > 10 || !Procfs.alive?(pid)

      sleep 0.3
    end
    record_op(:after_kill_unhooked, g, pid, t, active&.zero? || false,
              active.nil? ? "doctor -p #{pid} did not answer" : "#{active} trace(s) still active 10 s after the client was killed")
    # ...no eval thread left running...
    if kind == :eval
      t = now
      left = nil
      loop do
        r = cli(["eval", "-p", pid.to_s, 'Thread.list.count { |t| t.name == "rbscope-eval" && t != Thread.current && t.alive? }'])
        left = r[:rc]&.zero? ? r[:out].strip : "eval failed: #{r[:err].strip[0, 200]}"
        break if left == "0" || now - t > 10

        sleep 0.3
      end
      record_op(:after_kill_eval_gone, g, pid, t, left == "0", "eval threads still running 10 s after the client was killed: #{left}")
    end
    # ...and the next client attaches.
    op(:after_kill_attach, g, pid, ["trace", "-p", pid.to_s, "-m", "ItemsController#index", "--for", "500ms"]) do |r|
      r[:err].include?("*** attached") || "no attach line: #{r[:err][0, 200]}"
    end
    t0
  end

  # Dumps whose client was killed are still written by the forked child: removed once done.
  def sweep_dumps(final: false)
    deadline = now + (final ? 30 : 0)
    loop do
      partial = Dir[File.join(work, "dumps", "*")].select { |f| f.include?(".rbscope-partial-") }
      Dir[File.join(work, "dumps", "killed-*.json")].each { |f| File.delete(f) rescue nil }
      if final
        @partial_left = partial
        break if partial.empty? || now > deadline

        sleep 1
      else
        break
      end
    end
  end

  # After the load: the writers retry (backing off up to 30 s) until every snapshot reported
  # is stored or counted as dropped.
  def drain
    t0 = now
    pending = nil
    loop do
      pending = {}
      @clusters.each do |c|
        c.worker_pids.each do |p|
          k = doctor_counters(p) or next
          @counters[[c.name, p]] = k
          pending[[c.name, p]] = k["reports"] - k["rate_limited"] - k["encode_errors"] - k["queue_full"] -
                                 k["stored"] - k["store_dropped"] - k["store_over_cap"]
        end
      end
      break if pending.values.all?(&:zero?) || now - t0 > 90

      sleep 1
    end
    @drain_secs = now - t0
    @drain_pending = pending.values.sum
    log "writers drained in #{@drain_secs.round(1)} s (#{@drain_pending} snapshot(s) still pending)"
  end

  # --- analysis -------------------------------------------------------------------------

  Req = Struct.new(:sched, :start, :finish, :group, :kind, :id, :status, :worker, :error) do
    def latency = finish - start
    def from_sched = finish - sched
    def failed? = status.zero? || (kind == "fail" ? status != 500 : status != 200)
    def expected_500? = kind == "fail" && status == 500
  end

  def read_requests(file)
    return [] unless File.exist?(file)

    File.foreach(file).map do |l|
      f = l.chomp.split("\t", -1)
      Req.new(f[0].to_f, f[1].to_f, f[2].to_f, f[3], f[4], f[5], f[6].to_i, f[7].to_i, f[8])
    end
  end

  def stored_ids(cluster)
    r = cli(["list", "--json", "-n", "10000000", "--store", cluster.store], timeout: 120)
    raise "cannot list the #{cluster.name} store: #{r[:err]}" unless r[:rc]&.zero?

    JSON.parse(r[:out]).map { |s| [s["message"][/\Asoak failure (\S+):/, 1], s] }
  end

  def outage_windows(group)
    kind = group == "pg" ? :pg : :disk
    @faults.select { |f| f[:kind] == kind }.map { |f| [f[:t0], f[:t1]] }
  end

  # The memory series, for a look with --keep: rss.tsv and vm-memory.tsv in the work directory.
  def write_series
    File.open(File.join(work, "rss.tsv"), "w") do |f|
      @rss.each { |(p, g, role, pid), s| s.each { |t, kb| f.puts [p, g, role, pid, t.round(1), kb].join("\t") } }
    end
    File.open(File.join(work, "vm-memory.tsv"), "w") do |f|
      @vm_mem.each { |(g, pid), s| s.each { |t, m| f.puts [g, pid, t.round(1), *m.map { |k, v| "#{k}=#{v}" }].join("\t") } }
    end
  end

  def analyse
    write_series
    @req = {}
    %w[baseline rbscope].each do |phase|
      @req[phase] = read_requests(File.join(work, "requests-#{phase}.tsv"))
      @req["#{phase}-warmup"] = read_requests(File.join(work, "requests-#{phase}-warmup.tsv"))
    end
    # Snapshots: every failing request of the rbscope phase (warm-up included) had an id.
    @snap = {}
    @clusters.each do |c|
      rows = stored_ids(c)
      ids = rows.map(&:first).compact
      expected = (@req["rbscope"] + @req["rbscope-warmup"]).select { |r| r.group == c.name && r.expected_500? }
      stored = ids.tally
      windows = outage_windows(c.name)
      lost = expected.reject { |r| stored.key?(r.id) }
      dead = @worker_changes.map(&:last)
      with_dead = lost.select { |r| dead.include?(r.worker) }
      lost -= with_dead
      during = lost.select { |r| windows.any? { |a, b| r.start <= b + 2 && r.finish >= a - 1 } }
      @snap[c.name] = {
        store: c.store, expected: expected.size, stored: expected.count { |r| stored.key?(r.id) },
        lost_reachable: lost - during, lost_unreachable: during, lost_dead: with_dead,
        duplicates: stored.count { |_, n| n > 1 },
        other: rows.size - ids.size,
        not_asked: ids.uniq.size - expected.count { |r| stored.key?(r.id) },
        rows: rows.size,
      }
    end
  end

  # --- the report -----------------------------------------------------------------------

  def latency_row(name, reqs)
    lat = reqs.map(&:latency).sort
    sch = reqs.map(&:from_sched).sort
    "| #{name} | #{reqs.size} | #{ms(pct(lat, 50))} | #{ms(pct(lat, 90))} | #{ms(pct(lat, 99))} | " \
      "#{ms(pct(lat, 99.9))} | #{ms(lat.last)} | #{ms(pct(sch, 99))} |"
  end

  def verdict
    failed = %w[baseline rbscope baseline-warmup rbscope-warmup].sum { |p| (@req[p] || []).count(&:failed?) }
    lost = @snap.values.sum { |s| s[:lost_reachable].size }
    crashes = crash_count
    ops_failed = @ops.count { |o| !o[:ok] }
    reasons = []
    reasons << "#{failed} failed request(s)" if failed.positive?
    reasons << "#{lost} snapshot(s) lost while the store was reachable" if lost.positive?
    reasons << "#{crashes} crash(es)" if crashes.positive?
    reasons << "#{ops_failed} client operation(s) failed" if ops_failed.positive?
    reasons << "the client loop stopped: #{@client_loop_error}" if @client_loop_error
    reasons << "a fault loop stopped: #{@fault_loop_error}" if @fault_loop_error
    reasons
  end

  # Worker deaths seen, or fatal log lines (a panic may not kill), whichever is more.
  def crash_count
    fatal = (@crash_lines || []).count { |l| !l.include?("worker boot(s) beyond") }
    extra_boots = (@crash_lines || []).sum { |l| l[/: (\d+) worker boot\(s\) beyond/, 1].to_i }
    [@worker_changes.size, fatal, extra_boots].max
  end

  def report
    r = []
    reasons = verdict
    rev = `git -C #{ROOT} rev-parse --short HEAD 2>/dev/null`.strip
    dirty = `git -C #{ROOT} status --porcelain --untracked-files=no 2>/dev/null`.strip.empty? ? "" : " (with uncommitted changes)"
    r << "# rbscope soak report"
    r << ""
    r << "#{Time.now.utc.strftime('%Y-%m-%d %H:%M UTC')}, revision #{rev}#{dirty}, #{Etc.nprocessors} cores, " \
         "Ruby #{RUBY_VERSION}, puma #{`puma --version 2>/dev/null`[/\d+\.\d+\.\d+/]}, Rails #{rails_version}, " \
         "PostgreSQL #{File.basename(File.dirname(pg_bin))}; `scripts/soak --minutes #{opts[:minutes]}` (seed #{opts[:seed]})."
    r << ""
    r << "**#{reasons.empty? ? 'PASS' : 'FAIL'}**#{reasons.empty? ? ': no failed request, no snapshot lost while its store was reachable, no crash, every client operation succeeded.' : ": #{reasons.join('; ')}."}"
    r << ""
    r << "Set-up: two puma #{`puma --version 2>/dev/null`[/\d+\.\d+\.\d+/]} clusters of the Rails app in examples/soak/app on loopback: " \
         "`pg` (2 workers, app preloaded in the master, snapshots to PostgreSQL) takes 75% of the requests, `disk` (1 worker, app loaded " \
         "by the worker, snapshots to SQLite on a #{opts[:disk_mb]} MiB tmpfs) 25%. #{opts[:rate]} requests/s, " \
         "#{(opts[:fail_share] * 100).round(1)}% of them to GET /checkout, which raises (an expected 500, and a snapshot). " \
         "Each phase: #{opts[:warmup]} s of warm-up, then #{@seconds} s measured; the baseline runs the same app with RBSCOPE_DISABLE=1, " \
         "no clients and no faults."
    r << "" << "The client loop was off (--no-clients)." unless opts[:clients]
    r << "" << "The faults were off (--no-faults)." unless opts[:faults]
    r << ""
    r.concat(summary)
    r << ""
    r << "## Requests"
    r << ""
    r << "| phase | duration | requests | failed | expected 500s | unexpected statuses |"
    r << "|---|---|---|---|---|---|"
    %w[baseline rbscope].each do |p|
      all = (@req[p] || []) + (@req["#{p}-warmup"] || [])
      next if all.empty?

      dur = @phase_windows[p] ? (@phase_windows[p][1] - @phase_windows[p][0]).round : "-"
      r << "| #{p} (warm-up included) | #{dur} s + #{opts[:warmup]} s | #{all.size} | #{all.count { |x| x.status.zero? }} errors + " \
           "#{all.count { |x| x.failed? && !x.status.zero? }} bad statuses = **#{all.count(&:failed?)}** | #{all.count(&:expected_500?)} | " \
           "#{all.select { |x| x.failed? && !x.status.zero? }.map(&:status).tally.map { |s, n| "#{s}: #{n}" }.join(', ').then { |s| s.empty? ? '-' : s }} |"
    end
    r << ""
    r << "Latency (send to last byte of the answer; the last column from the request's scheduled time, which also counts any wait for a free load thread):"
    r << ""
    r << "| requests | n | p50 | p90 | p99 | p99.9 | max | p99 from schedule |"
    r << "|---|---|---|---|---|---|---|---|"
    %w[baseline rbscope].each do |p|
      reqs = @req[p] || []
      next if reqs.empty?

      r << latency_row("#{p}: all", reqs)
      %w[list show fail].each { |k| r << latency_row("#{p}: #{k}", reqs.select { |x| x.kind == k }) }
      %w[pg disk].each { |g| r << latency_row("#{p}: #{g} app", reqs.select { |x| x.group == g }) }
    end
    if @req["rbscope"]&.any?
      # The operations' time spans merged into disjoint ones, sorted: a request overlaps one
      # when the last span starting before the request ends runs past its start (a binary
      # search per request; testing every pair took many minutes for an hour's run).
      busy = @ops.map { |o| [o[:t0], o[:t1]] }.sort.each_with_object([]) do |(a, b), merged|
        if merged.any? && a <= merged[-1][1] then merged[-1][1] = [merged[-1][1], b].max
        else merged << [a, b]
        end
      end
      starts = busy.map(&:first)
      during, outside = @req["rbscope"].partition do |x|
        i = starts.bsearch_index { |a| a >= x.finish }
        i = i.nil? ? busy.size - 1 : i - 1
        i >= 0 && busy[i][1] > x.start
      end
      r << latency_row("rbscope: while a client operation ran", during)
      r << latency_row("rbscope: while none ran", outside)
    end
    failures = %w[baseline-warmup baseline rbscope-warmup rbscope].flat_map { |p| (@req[p] || []).select(&:failed?).map { |x| [p, x] } }
    unless failures.empty?
      r << ""
      r << "Failed requests (first 20):"
      r << ""
      failures.first(20).each do |p, x|
        r << "- #{p} #{Time.at(x.start).utc.strftime('%H:%M:%S.%L')} #{x.group} #{x.kind} #{x.id}: status #{x.status} " \
             "after #{ms(x.latency)} #{x.error}"
      end
    end
    r << ""
    r << "## Snapshots (rbscope phase, warm-up included)"
    r << ""
    r << "| app | store | expected | stored | lost while reachable | lost while unreachable or full | lost with a worker that died | duplicates | other rows |"
    r << "|---|---|---|---|---|---|---|---|---|"
    @snap.each do |g, s|
      r << "| #{g} | #{g == 'pg' ? 'PostgreSQL' : 'SQLite on tmpfs'} | #{s[:expected]} | #{s[:stored]} | **#{s[:lost_reachable].size}** | " \
           "#{s[:lost_unreachable].size} | #{s[:lost_dead].size} | #{s[:duplicates]} | #{s[:rows] - s[:stored]} |"
    end
    r << ""
    r << "Expected = GET /checkout requests answered 500. A missing one counts as lost while unreachable or full when its request overlapped " \
         "(from 1 s before to 2 s after) a PostgreSQL outage or a disk-full episode of its app's store, and as lost with a worker that died when the worker " \
         "that answered it died later (its snapshots waiting in memory died with it; the crash is counted below). \"Other rows\" are rows " \
         "whose id no 500 answer of the rbscope phase carried (should be 0)."
    lost_examples = @snap.flat_map { |g, s| s[:lost_reachable].first(5).map { |x| "#{g} #{x.id} at #{Time.at(x.start).utc.strftime('%H:%M:%S.%L')}" } }
    r << "" << "Lost while reachable: #{lost_examples.join(', ')}" unless lost_examples.empty?
    r << ""
    r << "The agents' counters at the end (`rbscope doctor -p PID`, summed per app; the writers were given #{@drain_secs&.round(1)} s after the load " \
         "to drain, #{@drain_pending.inspect} snapshot(s) still pending then):"
    r << ""
    keys = %w[raises_seen reports reports_without_capture rate_limited queue_full stored store_errors stored_after_retry store_dropped store_over_cap
              control_connections traces_started trace_events_lost evals_run evals_timed_out]
    r << "| app | #{keys.join(' | ')} |"
    r << "|---|#{keys.map { '---' }.join('|')}|"
    @clusters.each do |c|
      sums = keys.map { |k| @counters.select { |(g, _), _| g == c.name }.sum { |_, v| v[k].to_i } }
      r << "| #{c.name} | #{sums.join(' | ')} |"
    end
    r << ""
    r << "## Client operations (rbscope phase)"
    r << ""
    r << "| operation | run | failed | median | max |"
    r << "|---|---|---|---|---|"
    @ops.group_by { |o| o[:kind] }.sort_by { |k, _| k.to_s }.each do |k, os|
      secs = os.map { |o| o[:t1] - o[:t0] }.sort
      r << "| #{k} | #{os.size} | #{os.count { |o| !o[:ok] }} | #{format('%.2f s', pct(secs, 50))} | #{format('%.2f s', secs.last)} |"
    end
    kills = @kills || {}
    r << ""
    r << "Clients killed with SIGKILL: #{kills.values.sum(&:first)} (#{kills.map { |k, (a, b)| "#{k} #{a}#{b.positive? ? " + #{b} finished first" : ''}" }.join(', ')}); " \
         "after each, the agent had to show no active trace, no eval thread left (after an eval), and take the next attach (the after_kill rows)."
    r << "`rbscope stacks -p` answered from outside (agent busy) #{@stacks_outside || 0} time(s)." if @stacks_outside
    r << "Partial heap dump files left: #{(@partial_left || []).size}."
    bad = @ops.reject { |o| o[:ok] }
    unless bad.empty?
      r << ""
      r << "Failed operations (first 20):"
      r << ""
      bad.first(20).each { |o| r << "- #{Time.at(o[:t0]).utc.strftime('%H:%M:%S')} #{o[:kind]} on #{o[:group]} #{o[:pid]}: #{o[:detail].to_s[0, 400]}" }
    end
    r << ""
    r << "## Faults (rbscope phase)"
    r << ""
    pg = @faults.select { |f| f[:kind] == :pg }
    disk = @faults.select { |f| f[:kind] == :disk }
    r << "- PostgreSQL restarts: #{pg.size} (#{pg.map { |f| f[:mode] }.tally.map { |m, n| "#{n} #{m} shutdown" }.join(', ')}), " \
         "down #{pg.sum { |f| f[:t1] - f[:t0] }.round(1)} s in all"
    r << "- disk-full episodes: #{disk.size}, full #{disk.sum { |f| f[:t1] - f[:t0] }.round(1)} s in all " \
         "(free bytes once filled: #{disk.map { |f| f[:free] }.uniq.join(', ')})"
    r << ""
    r << "| # | fault | from (s into the phase) | to | length |"
    r << "|---|---|---|---|---|"
    start = (@phase_windows || {})["rbscope"]&.first || 0
    @faults.sort_by { |f| f[:t0] }.each_with_index do |f, i|
      r << "| #{i + 1} | #{f[:kind] == :pg ? "PostgreSQL stop (#{f[:mode]})" : 'disk full'} | #{(f[:t0] - start).round(1)} | " \
           "#{(f[:t1] - start).round(1)} | #{(f[:t1] - f[:t0]).round(1)} s |"
    end
    r << ""
    r << "## Worker memory (VmRSS every 10 s)"
    r << ""
    r << "| phase | app | process | samples | first | last | max | slope, whole phase | slope, second half |"
    r << "|---|---|---|---|---|---|---|---|---|"
    @rss.sort_by { |(p, g, role, pid), _| [p == "baseline" ? 0 : 1, g, role, pid] }.each do |(p, g, role, pid), s|
      next if s.size < 2

      mb = s.map { |_, kb| kb / 1024.0 }
      hours = s.map { |t, _| (t - s[0][0]) / 3600.0 }
      half = s.size / 2
      sl = slope(hours, mb)
      sl2 = slope(hours[half..], mb[half..])
      r << "| #{p} | #{g} | #{role} #{pid} | #{s.size} | #{format('%.1f', mb.first)} MB | #{format('%.1f', mb.last)} MB | " \
           "#{format('%.1f', mb.max)} MB | #{sl ? format('%+.1f MB/h', sl) : '-'} | #{sl2 ? format('%+.1f MB/h', sl2) : '-'} |"
    end
    r << ""
    r << "Samples include the warm-up. Zombie children seen at once at most: #{@zombies_max.values.max || 0}."
    unless @vm_mem.empty?
      r << ""
      r << "Where the workers' memory is (`rbscope memory -p PID` every 30 s of the rbscope phase; first and last reading):"
      r << ""
      r << "| app | worker | readings | RSS | Ruby heap pages | malloc in use (heap pages included) | malloc free in arenas | Ruby threads | live objects |"
      r << "|---|---|---|---|---|---|---|---|---|"
      mb = ->(b) { format("%.1f", b / 1048576.0) }
      @vm_mem.each do |(g, pid), s|
        a = s.first[1]
        b = s.last[1]
        r << "| #{g} | #{pid} | #{s.size} | #{mb[a[:rss]]} → #{mb[b[:rss]]} MB | #{mb[a[:heap]]} → #{mb[b[:heap]]} MB | " \
             "#{mb[a[:malloc]]} → #{mb[b[:malloc]]} MB | #{mb[a[:malloc_free]]} → #{mb[b[:malloc_free]]} MB | #{a[:threads]} → #{b[:threads]} | " \
             "#{a[:live]} → #{b[:live]} |"
      end
    end
    r << ""
    r << "## Crashes"
    r << ""
    r << "- crashes counted: **#{crash_count}** (the most of: workers seen to die, fatal log lines, extra worker boots)"
    r << "- workers that died (puma started another): #{@worker_changes.size}#{@worker_changes.empty? ? '' : " (#{@worker_changes.map { |t, p, g, pid| "#{p}/#{g} #{pid} at #{Time.at(t).utc.strftime('%H:%M:%S')}" }.join('; ')})"}"
    r << "- log lines with [BUG], panicked, a fatal signal, or a puma worker death: #{(@crash_lines || []).size}"
    (@crash_lines || []).first(20).each { |l| r << "  - `#{l}`" }
    r << "- core files: #{(@cores || []).size}#{(@cores || []).empty? ? '' : " (#{@cores.join(', ')})"}"
    r << ""
    r << "Lines the agents logged: #{(@rbscope_lines || {}).map { |k, n| "#{k} × #{n}" }.join('; ')}."
    r << ""
    r.join("\n")
  end

  # The figures issue [11/11] asks for, in one table.
  def summary
    lat = ->(p) { (@req[p] || []).map(&:latency).sort }
    both = ->(f) { %w[baseline rbscope].map { |p| (@req[p] || []).empty? ? "-" : f.call(p) }.join(" / ") }
    all = %w[baseline rbscope].to_h { |p| [p, (@req[p] || []) + (@req["#{p}-warmup"] || [])] }
    snaps = ->(k) { @snap.values.sum { |s| s[k].is_a?(Array) ? s[k].size : s[k] } }
    kills = (@kills || {}).values.sum(&:first)
    slopes = lambda do |phase|
      ss = @rss.select { |(p, _, role, _), s| p == phase && role == "worker" && s.size >= 6 }.map do |_, s|
        half = s.size / 2
        slope(s[half..].map { |t, _| (t - s[0][0]) / 3600.0 }, s[half..].map { |_, kb| kb / 1024.0 })
      end.compact
      ss.empty? ? "-" : format("%+.0f MB/h", ss.sum / ss.size)
    end
    rss_range = lambda do |phase|
      w = @rss.select { |(p, _, role, _), s| p == phase && role == "worker" && !s.empty? }.values
      w.empty? ? "-" : format("%.0f → %.0f MB", w.sum { |s| s.first[1] } / 1024.0 / w.size, w.sum { |s| s.last[1] } / 1024.0 / w.size)
    end
    pg = @faults.count { |f| f[:kind] == :pg }
    disk = @faults.count { |f| f[:kind] == :disk }
    [
      "| figure (baseline / rbscope where both) | value | goal |",
      "|---|---|---|",
      "| measured duration per phase (+ warm-up) | #{@seconds} s (+ #{opts[:warmup]} s) | ≥ 600 s |",
      "| requests served (200, or the expected 500) | #{both.call(->(p) { all[p].count { |x| !x.failed? } })} | |",
      "| failed requests (connection errors, timeouts, unexpected statuses) | **#{both.call(->(p) { all[p].count(&:failed?) })}** | 0 |",
      "| expected 500s | #{both.call(->(p) { all[p].count(&:expected_500?) })} | |",
      "| p50 latency | #{both.call(->(p) { ms(pct(lat.call(p), 50)) })} | |",
      "| p99 latency | **#{both.call(->(p) { ms(pct(lat.call(p), 99)) })}** | |",
      "| snapshots expected / stored | #{snaps.call(:expected)} / #{snaps.call(:stored)} | |",
      "| snapshots lost while the store was reachable | **#{snaps.call(:lost_reachable)}** | 0 |",
      "| snapshots lost while the store was unreachable or full / with a worker that died | #{snaps.call(:lost_unreachable)} / #{snaps.call(:lost_dead)} | |",
      "| client operations run / failed | #{@ops.size} / **#{@ops.count { |o| !o[:ok] }}** | failed 0 |",
      "| clients killed with SIGKILL | #{kills} | |",
      "| PostgreSQL restarts / disk-full episodes | #{pg} / #{disk} | |",
      "| worker RSS, mean first → last | #{rss_range.call('baseline')} / #{rss_range.call('rbscope')} | |",
      "| worker RSS slope over the second half, mean | #{slopes.call('baseline')} / #{slopes.call('rbscope')} | flat |",
      "| crashes | **#{crash_count}** | 0 |",
    ]
  end

  def rails_version
    `ruby -e 'require "rails"; print Rails.version' 2>/dev/null`.strip
  end
end

opts = { minutes: 10.0, report: File.join(ROOT, "target", "soak", "report.md"), rate: 150, fail_share: 0.02,
         seed: Random.new_seed % 1_000_000, keep: false, baseline: true, warmup: 15, disk_mb: 64, load_threads: 8,
         clients: true, faults: true }
OptionParser.new do |o|
  o.banner = "usage: scripts/soak [--minutes N] [--report FILE] [--rate R] [--seed N] [--keep] [--no-baseline]"
  o.on("--minutes N", Float, "length of each phase (default 10)") { |v| opts[:minutes] = v }
  o.on("--report FILE", "the Markdown report (default target/soak/report.md)") { |v| opts[:report] = File.expand_path(v) }
  o.on("--rate R", Integer, "requests per second (default 150)") { |v| opts[:rate] = v }
  o.on("--fail-share F", Float, "share of requests that raise (default 0.02)") { |v| opts[:fail_share] = v }
  o.on("--seed N", Integer, "random seed for the schedule of clients and faults") { |v| opts[:seed] = v }
  o.on("--warmup S", Integer, "seconds of warm-up load per phase (default 15)") { |v| opts[:warmup] = v }
  o.on("--keep", "keep the work directory (logs, request records)") { opts[:keep] = true }
  o.on("--[no-]baseline", "run the baseline phase (default yes)") { |v| opts[:baseline] = v }
  o.on("--[no-]clients", "run the client loop (default yes; for narrowing a problem down)") { |v| opts[:clients] = v }
  o.on("--[no-]faults", "stop PostgreSQL and fill the disk (default yes; for narrowing a problem down)") { |v| opts[:faults] = v }
  o.on("--cli PATH") { |v| opts[:cli] = File.expand_path(v) }
  o.on("--agent PATH") { |v| opts[:agent] = File.expand_path(v) }
end.parse!

soak = Soak.new(opts)
report = nil
begin
  soak.run
  report = soak.report
rescue Interrupt, SignalException => e
  warn "[soak] stopped by #{e.is_a?(Interrupt) ? 'SIGINT' : e.message}; everything it started is stopped and removed"
  exit 130
ensure
  if report
    FileUtils.mkdir_p(File.dirname(opts[:report]))
    File.write(opts[:report], report)
    puts report
    warn "[soak] report written to #{opts[:report]}"
  end
end
exit(soak.verdict.empty? ? 0 : 1)
