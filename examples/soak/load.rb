# frozen_string_literal: true

# The soak's load generator: a steady request rate over keep-alive connections (Net::HTTP, one
# per thread and target), every request's outcome written as a line:
#
#   sched_t  start_t  end_t  target  kind  id  status  worker_pid  error
#
# (times are epoch seconds; status 0 with an error for a connection error or a timeout; the
# worker's pid from the app's X-Soak-Pid header).
# Requests are scheduled at RATE per second from the start, spread over the threads; a request
# that could not be sent on time (every thread busy) keeps its scheduled time, so latency can
# also be measured from the schedule.
#
# Few threads (8 by default), so that no worker holds more keep-alive connections than it has
# threads: puma 5 then leaves some connections waiting for seconds (after each request a
# thread waits up to 0.2 s for that connection's next one), whatever the app does.
#
#   ruby load.rb --target pg=127.0.0.1:3001:0.75 --target disk=127.0.0.1:3002:0.25 \
#     --rate 150 --seconds 600 --fail-share 0.02 --prefix soak --out requests.tsv
require "net/http"
require "optparse"

opts = { rate: 150.0, seconds: 60.0, threads: 8, fail_share: 0.02, prefix: "r", targets: [],
         timeout: 30.0, reconnect_every: 100, seed: Random.new_seed }
OptionParser.new do |o|
  o.on("--target NAME=HOST:PORT:SHARE") do |v|
    name, rest = v.split("=", 2)
    host, port, share = rest.split(":")
    opts[:targets] << { name: name, host: host, port: Integer(port), share: Float(share) }
  end
  o.on("--rate R", Float) { |v| opts[:rate] = v }
  o.on("--seconds S", Float) { |v| opts[:seconds] = v }
  o.on("--threads N", Integer) { |v| opts[:threads] = v }
  o.on("--fail-share F", Float) { |v| opts[:fail_share] = v }
  o.on("--prefix P") { |v| opts[:prefix] = v }
  o.on("--timeout S", Float) { |v| opts[:timeout] = v }
  o.on("--seed N", Integer) { |v| opts[:seed] = v }
  o.on("--out FILE") { |v| opts[:out] = v }
end.parse!
abort "load.rb: --target and --out are needed" if opts[:targets].empty? || !opts[:out]

def now = Process.clock_gettime(Process::CLOCK_REALTIME)

total = (opts[:rate] * opts[:seconds]).round
interval = 1.0 / opts[:rate]
shares = opts[:targets].sum { |t| t[:share] }
out = File.open(opts[:out], "w")
lines = Queue.new
writer = Thread.new do
  while (line = lines.pop)
    out.write(line)
  end
  out.flush
end

stopping = false
%w[INT TERM].each { |sig| trap(sig) { stopping = true } }

next_index = 0
index_lock = Mutex.new
t0 = now + 0.2

threads = Array.new(opts[:threads]) do |ti|
  Thread.new do
    rng = Random.new(opts[:seed] + ti)
    conns = {}
    served = Hash.new(0)
    loop do
      k = index_lock.synchronize { next_index.tap { next_index += 1 } }
      break if k >= total || stopping

      sched = t0 + k * interval
      wait = sched - now
      sleep(wait) if wait.positive?
      break if stopping

      # Which app, and which kind of request.
      x = rng.rand * shares
      target = opts[:targets].find { |t| (x -= t[:share]) < 0 } || opts[:targets].last
      r = rng.rand
      id = "#{opts[:prefix]}-#{target[:name]}-#{k}"
      kind, path =
        if r < opts[:fail_share]
          ["fail", "/checkout?id=#{id}"]
        elsif r < 0.70
          ["list", "/items?page=#{rng.rand(1000)}"]
        else
          ["show", "/items/#{1 + rng.rand(2000)}"]
        end

      # A fresh connection now and then, so connections spread over the workers.
      http = conns[target[:name]]
      if http && served[target[:name]] >= opts[:reconnect_every]
        http.finish rescue nil
        http = nil
      end
      unless http
        http = Net::HTTP.new(target[:host], target[:port])
        http.open_timeout = 5
        http.read_timeout = opts[:timeout]
        http.write_timeout = opts[:timeout]
        http.keep_alive_timeout = 60
        http.max_retries = 0 # a failure is a failure, not retried behind our back
        served[target[:name]] = 0
      end
      start = now
      status = 0
      worker = 0
      error = ""
      begin
        http.start unless http.started?
        req = Net::HTTP::Get.new(path)
        req["X-Request-Id"] = id
        req["User-Agent"] = "rbscope-soak"
        res = http.request(req)
        res.body
        status = res.code.to_i
        worker = res["X-Soak-Pid"].to_i
        served[target[:name]] += 1
        conns[target[:name]] = http
      rescue StandardError, Timeout::Error => e
        error = "#{e.class}: #{e.message}".tr("\t\n", "  ")[0, 200]
        http.finish rescue nil
        conns.delete(target[:name])
      end
      finish = now
      lines << format("%.6f\t%.6f\t%.6f\t%s\t%s\t%s\t%d\t%d\t%s\n", sched, start, finish, target[:name], kind, id,
                      status, worker, error)
    end
    conns.each_value { |h| h.finish rescue nil }
  end
end
threads.each(&:join)
lines << nil
writer.join
out.close
