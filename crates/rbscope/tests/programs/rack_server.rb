# frozen_string_literal: true

# A plain HTTP/1.0 server for a config.ru, for the Rubies that Debian's puma (compiled for
# Ruby 3.1) does not run on: real Rack (Rack::Builder, the app's middleware stack), real
# requests over loopback, each on a thread of its own (named "rack_server N", as puma names its
# pool's threads), so a request that waits does not hold up the next one. Like puma, an
# exception that escapes the app is answered with a 500. Prints puma's "Listening on" line
# once it listens.
#   ruby -I<rack lib> rack_server.rb config.ru
require "rack"
require "socket"

app, = Rack::Builder.parse_file(ARGV.fetch(0))
server = TCPServer.new("127.0.0.1", 0)
$stdout.puts "* Listening on http://127.0.0.1:#{server.addr[1]}"
$stdout.flush
Signal.trap("TERM") { exit }

def serve(app, client)
  request_line = client.gets.to_s
  method, path = request_line.split(" ", 3)
  headers = {}
  while (line = client.gets) && line != "\r\n"
    name, value = line.split(":", 2)
    headers["HTTP_#{name.strip.upcase.tr('-', '_')}"] = value.to_s.strip
  end
  env = Rack::MockRequest.env_for(path.to_s, headers.merge("REQUEST_METHOD" => method.to_s))
  begin
    status, response_headers, body = app.call(env)
    text = +""
    body.each { |part| text << part }
    body.close if body.respond_to?(:close)
  rescue Exception # rubocop:disable Lint/RescueException -- a server answers whatever the app did
    status = 500
    response_headers = {}
    text = "Internal Server Error"
  end
  client.write("HTTP/1.0 #{status} X\r\n")
  response_headers.each { |k, v| client.write("#{k}: #{v}\r\n") }
  client.write("Content-Length: #{text.bytesize}\r\n\r\n#{text}")
  client.close
end

served = 0
loop do
  client = server.accept
  served += 1
  Thread.new(client, served) do |c, n|
    Thread.current.name = "rack_server #{n}"
    serve(app, c)
  end
end
