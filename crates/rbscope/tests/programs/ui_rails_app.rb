# A Rails 6.1 (Debian's gems) record and parameters, for the web UI's value tree
# (tests/ui.rs): a saved user with a redacted column, a new one, and request parameters.
require "active_record"
require "action_controller"
ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: ":memory:")
ActiveRecord::Base.logger = nil
ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table(:users) { |t| t.string :name; t.string :password_digest; t.integer :age }
end
class User < ActiveRecord::Base; end

def sign_in
  User.create!(name: "ada", password_digest: "xyz", age: 36)
  user = User.first
  fresh = User.new(name: "bob")
  params = ActionController::Parameters.new(user: { name: "ada", password: "pw" }, id: "1")
  raise "sign-in failed for #{user.name}"
end
sign_in
