//! Rack and Sinatra apps served over loopback (by puma on Ruby 3.1; by a plain Rack server on
//! the Rubies Debian's puma and Sinatra do not serve): a failing request stores a snapshot with
//! the request's facts and the handler's locals; good requests store nothing.

mod common;
use common::*;

#[test]
fn plain_rack_app_failure_is_stored() {
    let sb = Sandbox::new();
    let ru = sb.write(
        "config.ru",
        r#"
require "rbscope"
Rbscope.start
class Catalog
  def find(sku)
    stock = { "A-1" => 3 }
    stock.fetch(sku)
  end
end
use Rbscope::Middleware
run lambda { |env|
  if env["PATH_INFO"] == "/ok"
    [200, { "content-type" => "text/plain" }, ["fine"]]
  else
    item = Catalog.new.find(env["PATH_INFO"].delete_prefix("/items/"))
    [200, {}, [item.to_s]]
  end
}
"#,
    );
    let server = Server::rack(&sb, &ru);
    assert_eq!(server.get("/ok").0, 200);
    let (status, _) = server.get("/items/Z-9");
    assert_eq!(status, 500);
    drop(server);
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    assert_eq!(snap["exception"]["class"], "KeyError");
    let extra = &snap["context"]["extra"];
    assert_eq!(extra["request_method"], "GET");
    assert_eq!(extra["path"], "/items/Z-9");
    assert_eq!(extra["request_id"], "req-42");
    assert_eq!(extra["user_agent"], "rbscope-test");
    let f = s.frame("Catalog#find");
    assert_eq!(s.obj(s.local(f, "sku"))["value"], "Z-9");
}

#[test]
fn sinatra_rendered_500_is_stored() {
    if !debian_gems_available("Sinatra") {
        return;
    }
    let sb = Sandbox::new();
    let ru = sb.write(
        "config.ru",
        r#"
require "sinatra/base"
require "rbscope"
Rbscope.start
class Shop < Sinatra::Base
  use Rbscope::Middleware
  get "/orders/:id" do
    order_id = params[:id].to_i
    raise ArgumentError, "no order #{order_id}" if order_id > 100
    "order #{order_id}"
  end
end
run Shop
"#,
    );
    let server = Server::puma(&sb, &ru, &[]);
    assert_eq!(server.get("/orders/7"), (200, "order 7".to_string()));
    let (status, _) = server.get("/orders/500");
    assert_eq!(status, 500, "Sinatra renders its own 500 in production");
    drop(server);
    let snap = sb.only_snapshot();
    let s = Snap(&snap);
    assert_eq!(snap["exception"]["class"], "ArgumentError");
    assert_eq!(snap["context"]["extra"]["path"], "/orders/500");
    let f = s.frame("Shop#GET /orders/:id");
    assert_eq!(s.local(f, "order_id")["value"], 500);
}
