//! Answers and requests of the UI server, independent of the HTTP library: a [`Reply`] is what
//! a handler returns, [`Query`] is a decoded query string. Every answer gets the same security
//! headers here, so no handler can forget them.

use serde_json::{json, Value};

/// Only the server's own scripts and styles; no framing, no plugins, no inline code.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).unwrap_or_default(),
            headers: vec![("Cache-Control", "no-store".into())],
        }
    }

    pub fn ok(v: &Value) -> Reply {
        Reply::json(200, v)
    }

    /// `{"error": message}`: one line saying what happened and what to do.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "error": message.into() }))
    }

    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    pub fn redirect(location: String) -> Reply {
        Reply {
            status: 302,
            content_type: "text/plain; charset=utf-8",
            body: Vec::new(),
            headers: vec![("Location", location)],
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    /// Every header of the answer, the security ones included.
    pub fn all_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("Content-Type", self.content_type.to_string()),
            ("Content-Security-Policy", CSP.to_string()),
            ("X-Content-Type-Options", "nosniff".to_string()),
            ("Referrer-Policy", "no-referrer".to_string()),
            ("X-Frame-Options", "DENY".to_string()),
        ];
        h.extend(self.headers.iter().cloned());
        h
    }
}

/// A decoded query string (`a=1&b=x%20y`).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: &str) -> Query {
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The value of `key` when given and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// The query without `key`, encoded again (for the redirect that drops the token).
    pub fn without(&self, key: &str) -> String {
        self.0
            .iter()
            .filter(|(k, _)| k != key)
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// A number parameter with a default and a ceiling; a malformed one is an error.
    pub fn number(&self, key: &str, default: usize, max: usize) -> Result<usize, Reply> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map(|n| n.min(max))
                .map_err(|_| Reply::error(400, format!("{key}={v:?} is not a number"))),
        }
    }
}

/// Percent-decoding, `+` as a space; invalid escapes are kept as they are.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~,:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = Query::parse("q=no+such%20thing&limit=5&token=abc&x=%zz&y=%4");
        assert_eq!(q.get("q"), Some("no such thing"));
        assert_eq!(q.number("limit", 50, 3).ok(), Some(3));
        assert_eq!(q.number("offset", 7, 100).ok(), Some(7));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.get("y"), Some("%4"));
        assert_eq!(q.get("nope"), None);
        assert_eq!(
            q.without("token"),
            "q=no%20such%20thing&limit=5&x=%25zz&y=%254"
        );
        assert!(Query::parse("limit=x").number("limit", 1, 9).is_err());
        assert_eq!(decode("%E2%9C%93"), "✓");
    }
}
