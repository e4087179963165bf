//! The page and its scripts and styles, compiled into the binary: the UI works offline and
//! serves exactly what was reviewed, whatever sits on the disk.

/// (URL path under /assets/, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/app.css"),
    ),
    ("main.js", JS, include_bytes!("../../ui/main.js")),
    ("format.js", JS, include_bytes!("../../ui/format.js")),
    ("snapshots.js", JS, include_bytes!("../../ui/snapshots.js")),
    ("valuetree.js", JS, include_bytes!("../../ui/valuetree.js")),
    ("heap.js", JS, include_bytes!("../../ui/heap.js")),
    ("treemap.js", JS, include_bytes!("../../ui/treemap.js")),
    ("traces.js", JS, include_bytes!("../../ui/traces.js")),
    ("flame.js", JS, include_bytes!("../../ui/flame.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// The one HTML page every route serves; its script renders the route.
pub const INDEX: &[u8] = include_bytes!("../../ui/index.html");

pub fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, b)| (*t, *b))
}
