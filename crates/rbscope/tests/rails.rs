//! A real Rails 6.1 app (Debian's ruby-rails) on SQLite, served by puma: a request that ends in
//! a 500 stores a snapshot with the controller frame, its locals, the controller's ivars and
//! the request's facts; a 404 (RecordNotFound) stores nothing; a failing ActiveJob stores one
//! with the job's facts; and the snapshot restores in a process that loaded the app, with
//! `@users.first` a real `User`.

mod common;
use common::*;
use std::process::Command;

fn rails_app(sb: &Sandbox) -> std::path::PathBuf {
    std::fs::create_dir_all(sb.dir.path().join("config")).unwrap();
    std::fs::create_dir_all(sb.dir.path().join("app/models")).unwrap();
    std::fs::create_dir_all(sb.dir.path().join("db")).unwrap();
    sb.write(
        "config/application.rb",
        r#"
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "active_job/railtie"
require "rbscope/rails"

class ShopApp < Rails::Application
  config.root = File.expand_path("..", __dir__)
  config.eager_load = false
  config.logger = Logger.new(nil)
  config.secret_key_base = "x" * 64
  config.hosts.clear
  config.filter_parameters += [:password]
  config.active_job.queue_adapter = :inline
  config.rbscope.log = false
end
"#,
    );
    sb.write(
        "config/environment.rb",
        r##"
require_relative "application"
Rails.application.initialize!
ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table(:users, force: true) { |t| t.string :name; t.string :email }
end
User.create!(name: "Ann", email: "ann@example.com")
User.create!(name: "Bob", email: "bob@example.com")

class UsersController < ActionController::Base
  def index
    limit = params[:limit].to_i
    settings = Rails.application.config
    app = Rails.application
    @users = User.order(:id).limit(limit).to_a
    total = @users.sum { |u| u.name.length }
    raise ArgumentError, "report for #{limit} users failed" if limit > 1
    render plain: "#{@users.size} users, #{total}"
  end

  def show
    render plain: User.find(params[:id]).name
  end
end

class ReportJob < ActiveJob::Base
  def perform(user_id)
    user = User.find(user_id)
    raise IOError, "mailer down for #{user.email}"
  end
end

Rails.application.routes.draw do
  get "/users" => "users#index"
  get "/users/:id" => "users#show"
end
"##,
    );
    sb.write(
        "config/database.yml",
        "production:\n  adapter: sqlite3\n  database: db/shop.sqlite3\ndevelopment:\n  adapter: sqlite3\n  database: db/shop.sqlite3\n",
    );
    sb.write(
        "app/models/user.rb",
        "class User < ActiveRecord::Base; end\n",
    );
    sb.write(
        "config.ru",
        "require_relative \"config/environment\"\nrun Rails.application\n",
    )
}

#[test]
fn a_500_is_stored_and_restores_with_real_records() {
    if !debian_gems_available("Rails 6.1") {
        return;
    }
    let sb = Sandbox::new();
    let ru = rails_app(&sb);
    let server = Server::puma(&sb, &ru, &[]);
    let (ok, body) = server.get("/users?limit=1");
    assert_eq!((ok, body.as_str()), (200, "1 users, 3"));
    assert_eq!(
        server.get("/users/999").0,
        404,
        "RecordNotFound is a 404: not stored"
    );
    assert_eq!(server.get("/users?limit=2").0, 500);
    drop(server);

    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    assert_eq!(snap["exception"]["class"], "ArgumentError");
    let extra = &snap["context"]["extra"];
    assert_eq!(extra["path"], "/users");
    assert_eq!(extra["request_id"], "req-42");
    let f = s.frame("UsersController#index");
    assert_eq!(s.local(f, "limit")["value"], 2);
    assert_eq!(s.local(f, "total")["value"], 6);
    let controller = s.obj(&f["self"]);
    let users = s.obj(s.ivar(controller, "@users"));
    assert_eq!(users["length"], 2);
    assert_eq!(s.obj(&users["items"][0])["class"], "User");
    // Rails' singletons are stored by name, not copied.
    for (local, name) in [
        ("settings", "Rails.application.config"),
        ("app", "Rails.application"),
    ] {
        let o = s.obj(s.local(f, local));
        assert_eq!(o["kind"], "magic", "{local}: {o}");
        assert_eq!(o["path"], name, "{o}");
    }

    // Restore in a process that loaded the app.
    let id = snap["id"].as_str().unwrap();
    let out = Command::new("ruby")
        .arg(format!("-I{}", gem_lib().display()))
        .args(["-r./config/environment", "-rrbscope/restore", "-e"])
        .arg(format!(
            r#"r = Rbscope.restore("{id}", console: false)
c = r.frames[0].self_object
users = c.instance_variable_get(:@users)
l = r.frames[0].locals
puts [c.class.name, users.first.class.name, users.first.name, users.last.email, l[:limit],
      c.params[:limit], l[:app].equal?(Rails.application), l[:settings].equal?(Rails.application.config)].inspect"#
        ))
        .current_dir(sb.dir.path())
        .env("RBSCOPE_STORE", sb.store())
        .env("RBSCOPE_DISABLE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"["UsersController", "User", "Ann", "bob@example.com", 2, "2", true, true]"#
    );
}

/// Runs `code` with `ruby -r<require>` in the app's directory, with the sandbox's store.
fn ruby_in_app(sb: &Sandbox, require: &str, code: &str) -> std::process::Output {
    Command::new("ruby")
        .arg(format!("-I{}", gem_lib().display()))
        .args([format!("-r{require}").as_str(), "-e", code])
        .current_dir(sb.dir.path())
        .env("RBSCOPE_STORE", sb.store())
        .env("XDG_RUNTIME_DIR", sb.dir.path().join("run"))
        .output()
        .unwrap()
}

#[test]
fn a_failing_active_job_is_stored() {
    if !debian_gems_available("Rails 6.1") {
        return;
    }
    let sb = Sandbox::new();
    rails_app(&sb);
    let out = ruby_in_app(
        &sb,
        "./config/environment",
        "begin; ReportJob.perform_now(User.first.id); rescue IOError; end; Rbscope.flush",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    assert_eq!(snap["exception"]["class"], "IOError");
    let extra = &snap["context"]["extra"];
    assert_eq!(extra["job_class"], "ReportJob");
    assert_eq!(extra["queue"], "default");
    assert_eq!(extra["attempt"], "1");
    let f = s.frame("ReportJob#perform");
    assert_eq!(s.obj(s.local(f, "user"))["class"], "User");
}

#[test]
fn better_backtraces_in_the_rails_error_log() {
    if !debian_gems_available("Rails 6.1") {
        return;
    }
    let sb = Sandbox::new();
    rails_app(&sb);
    let out = ruby_in_app(
        &sb,
        "./config/application",
        r#"log = StringIO.new
Rails.application.config.logger = ActiveSupport::Logger.new(log)
Rails.application.config.rbscope.better_backtraces = true
require "./config/environment"
puts Rack::MockRequest.new(Rails.application).get("/users?limit=2").status
puts log.string.lines.grep(/ArgumentError|config\/environment/)"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    // The app's frames, cleaned by Rails' backtrace cleaner (root-relative, framework frames
    // silenced), labelled by rbscope.
    assert_eq!(
        lines,
        [
            "500",
            "ArgumentError (report for 2 users failed):",
            "config/environment.rb:18:in UsersController#index()",
        ],
        "{text}"
    );
}

#[test]
fn eval_runs_in_the_rails_executor_and_returns_its_connection() {
    if !debian_gems_available("Rails 6.1") {
        return;
    }
    let sb = Sandbox::new();
    let ru = rails_app(&sb);
    let app_rb = sb.dir.path().join("config/application.rb");
    let text = std::fs::read_to_string(&app_rb).unwrap().replace(
        "config.rbscope.log = false",
        "config.rbscope.log = false\n  config.rbscope.allow_eval = true",
    );
    std::fs::write(&app_rb, text).unwrap();
    let server = Server::puma(&sb, &ru, &[]);
    let pid = server.child.id().to_string();
    let eval = |code: &str| {
        let out = Command::new(cli())
            .args(["eval", "-p", &pid, code])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let in_use = "ActiveRecord::Base.connection_pool.connections.count(&:in_use?)";
    let before = eval(in_use);
    assert_eq!(
        eval("[Rails.application.executor.active?, User.count, User.first.name]"),
        "[true, 2, \"Ann\"]"
    );
    // The eval's thread checked out a connection; the executor gave it back.
    assert_eq!(eval(in_use), before);
    assert_eq!(server.get("/users/2").1, "Bob");
}

#[test]
fn the_activerecord_preset_traces_real_queries() {
    if !debian_gems_available("Rails 6.1") {
        return;
    }
    use std::io::{BufRead, BufReader};
    let sb = Sandbox::new();
    let ru = rails_app(&sb);
    let server = Server::puma(&sb, &ru, &[]);
    let out = sb.dir.path().join("ar.trace");
    let mut trace = Command::new(cli())
        .args([
            "trace",
            "-p",
            &server.child.id().to_string(),
            "--preset",
            "activerecord",
            "-o",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(trace.stderr.take().unwrap());
    let mut attached = String::new();
    err.read_line(&mut attached).unwrap();
    assert!(attached.starts_with("*** attached"), "{attached}");
    assert!(attached.contains("ActiveRecord::"), "{attached}");
    assert_eq!(server.get("/users/2").1, "Bob");
    // SAFETY: interrupting our own child, as Ctrl-C would.
    unsafe { libc::kill(trace.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(trace.wait().unwrap().success(), "{rest}");
    let text = std::fs::read_to_string(&out).unwrap();
    // The SQL of User.find, captured from the SQLite adapter.
    assert!(
        text.contains("exec_query(sql=\"SELECT \\\"users\\\".* FROM \\\"users\\\" WHERE"),
        "{text}"
    );
    // The other adapters are not loaded: said, not an error.
    assert!(
        rest.contains("PostgreSQLAdapter") && rest.contains("(optional: skipped)"),
        "{rest}"
    );
}
