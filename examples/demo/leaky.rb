# A web-ish app with a leak: every "request" stores its session in a class-level cache that is
# never pruned. It writes three heap dumps (ObjectSpace.dump_all, allocation tracing on) as it
# runs; `rbscope heap diff` then finds what kept growing and `rbscope heap path` says why it is
# alive. Usage: ruby examples/demo/leaky.rb DIR
require "objspace"
ObjectSpace.trace_object_allocations_start

module Shop
  class Session
    def initialize(user_id)
      @user_id = user_id
      @cart = Array.new(3) { |i| "sku-#{user_id}-#{i}" }
    end
  end

  class SessionStore
    @sessions = {}
    class << self
      def remember(id, session) = @sessions[id] = session
    end
  end

  def self.handle_request(id)
    session = Session.new(id)
    SessionStore.remember(id, session) # the leak: nothing ever forgets a session
    "ok #{id}" # the response, garbage right away
  end
end

def dump(path)
  GC.start
  File.open(path, "w") { |f| ObjectSpace.dump_all(output: f) }
end

dir = ARGV.fetch(0)
dump("#{dir}/1.json")
(1..5_000).each { |id| Shop.handle_request(id) }
dump("#{dir}/2.json")
(5_001..10_000).each { |id| Shop.handle_request(id) }
dump("#{dir}/3.json")
puts "wrote #{dir}/1.json, 2.json and 3.json"
