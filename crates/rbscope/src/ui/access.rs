//! Who may use the UI. It shows what production processes held (redacted, but still private)
//! and reads files with the rights of whoever started it, so:
//!
//! - On a loopback address, the `Host` header must name a loopback host: a web page elsewhere
//!   that points its own name at 127.0.0.1 (DNS rebinding) cannot read the API.
//! - On any other address (and on loopback with `--token`), every request needs the token:
//!   given once as `?token=` (the URL `rbscope ui` prints), kept in an HttpOnly, SameSite=Strict
//!   cookie, or sent as `Authorization: Bearer`. Tokens are compared in constant time.

use super::http::{Query, Reply};

const COOKIE: &str = "rbscope_ui";

pub struct Access {
    pub loopback: bool,
    pub token: Option<String>,
}

/// What to do with a request before routing it.
pub enum Verdict {
    Allow,
    /// Answer this instead (a refusal, or the redirect that stores the token in a cookie).
    Answer(Reply),
}

impl Access {
    /// `host`: the Host header; `cookie` and `authorization`: those headers; `path` and
    /// `query`: the request target.
    pub fn check(
        &self,
        host: Option<&str>,
        cookie: Option<&str>,
        authorization: Option<&str>,
        path: &str,
        query: &Query,
    ) -> Verdict {
        let api = path.starts_with("/api/");
        if self.loopback && !host.is_some_and(is_loopback_host) {
            let msg = "this rbscope ui answers only to a loopback host name (127.0.0.1, localhost or [::1]); open the URL it printed";
            return Verdict::Answer(refusal(403, api, msg));
        }
        let Some(token) = &self.token else {
            return Verdict::Allow;
        };
        if let Some(given) = query.get("token") {
            if same(given, token) {
                let rest = query.without("token");
                let location = if rest.is_empty() {
                    path.to_string()
                } else {
                    format!("{path}?{rest}")
                };
                return Verdict::Answer(Reply::redirect(location).with_header(
                    "Set-Cookie",
                    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"),
                ));
            }
            return Verdict::Answer(refusal(
                401,
                api,
                "wrong token: open the URL `rbscope ui` printed (it has the right one)",
            ));
        }
        let from_cookie = cookie.and_then(|c| {
            c.split(';').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k == COOKIE).then_some(v)
            })
        });
        let from_header = authorization.and_then(|a| a.strip_prefix("Bearer "));
        if from_cookie.is_some_and(|t| same(t, token))
            || from_header.is_some_and(|t| same(t, token))
        {
            return Verdict::Allow;
        }
        Verdict::Answer(refusal(
            401,
            api,
            "this rbscope ui needs its token: open the URL `rbscope ui` printed (with ?token=...), or send Authorization: Bearer TOKEN",
        ))
    }
}

fn refusal(status: u16, api: bool, msg: &str) -> Reply {
    if api {
        Reply::error(status, msg)
    } else {
        Reply::bytes(
            status,
            "text/plain; charset=utf-8",
            format!("rbscope ui: {msg}\n").into_bytes(),
        )
    }
}

/// `127.0.0.1[:port]`, `localhost[:port]`, `[::1][:port]`, any case.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || after.starts_with(':') => inside,
            _ => return false,
        }
    } else {
        host.split(':').next().unwrap_or("")
    };
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Constant-time comparison (the time does not depend on where the strings differ).
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).unwrap_or(&0) ^ b.get(i).unwrap_or(&0);
    }
    diff == 0
}

/// A new random token (128 bits from the kernel, hex), or RBSCOPE_UI_TOKEN when set.
pub fn new_token() -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("RBSCOPE_UI_TOKEN") {
        if t.len() < 16
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            anyhow::bail!("RBSCOPE_UI_TOKEN must be at least 16 letters, digits, - or _");
        }
        return Ok(t);
    }
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most b.len() bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        anyhow::bail!("cannot get random bytes for the UI's token from the kernel");
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(v: Verdict) -> u16 {
        match v {
            Verdict::Allow => 200,
            Verdict::Answer(r) => r.status,
        }
    }

    #[test]
    fn hosts() {
        for h in [
            "127.0.0.1:7070",
            "localhost",
            "LOCALHOST:1",
            "[::1]:7070",
            "[::1]",
            "127.0.0.2",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:7070",
            "127.0.0.1.evil.example",
            "[::1]x",
            "",
            "10.0.0.1",
            "localhost.evil",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn tokens() {
        let a = Access {
            loopback: false,
            token: Some("s3cret-token-0000".into()),
        };
        let q = Query::parse("");
        assert_eq!(status(a.check(Some("x"), None, None, "/api/info", &q)), 401);
        assert_eq!(
            status(a.check(
                Some("x"),
                Some("rbscope_ui=s3cret-token-0000"),
                None,
                "/api/info",
                &q
            )),
            200
        );
        assert_eq!(
            status(a.check(
                Some("x"),
                Some("a=b; rbscope_ui=s3cret-token-0001"),
                None,
                "/",
                &q
            )),
            401
        );
        assert_eq!(
            status(a.check(
                Some("x"),
                None,
                Some("Bearer s3cret-token-0000"),
                "/api/info",
                &q
            )),
            200
        );
        let q = Query::parse("token=s3cret-token-0000&q=a");
        match a.check(Some("x"), None, None, "/snapshots", &q) {
            Verdict::Answer(r) => {
                assert_eq!(r.status, 302);
                let h = r.all_headers();
                assert!(h.contains(&("Location", "/snapshots?q=a".into())));
                assert!(h.iter().any(|(k, v)| *k == "Set-Cookie"
                    && v.contains("HttpOnly")
                    && v.contains("SameSite=Strict")));
            }
            Verdict::Allow => panic!("expected the cookie redirect"),
        }
        assert_eq!(
            status(a.check(Some("x"), None, None, "/", &Query::parse("token=nope"))),
            401
        );
        let open = Access {
            loopback: true,
            token: None,
        };
        assert_eq!(
            status(open.check(Some("127.0.0.1:7070"), None, None, "/", &Query::parse(""))),
            200
        );
        assert_eq!(
            status(open.check(
                Some("rebound.example:7070"),
                None,
                None,
                "/api/info",
                &Query::parse("")
            )),
            403
        );
        assert_eq!(
            status(open.check(None, None, None, "/", &Query::parse(""))),
            403
        );
        assert!(
            same("abc", "abc") && !same("abc", "abd") && !same("abc", "abcd") && !same("", "a")
        );
    }
}
