//! Which captured values are secrets.
//!
//! Snapshots leave the process and are read by people who should not see passwords, tokens or
//! card numbers, so redaction is on by default. A value is redacted when the *name* that holds
//! it (a local variable, an instance variable, a hash key, a struct member) looks secret, or
//! when the *value* itself looks like a card number or a well-known secret format.
//!
//! Name matching works on the words of a name (`api_key`, `apiKey`, `X-Api-Key` all give the
//! words `api`, `key`), so `author` is not mistaken for `auth`. A few distinctive fragments
//! (`password`, `token`, `secret`, ...) also match inside longer words (`accesstoken`).

/// Words that make a name secret on their own.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "auth",
    "authorization",
    "bearer",
    "cookie",
    "cookies",
    "session",
    "sessions",
    "credential",
    "credentials",
    "cvv",
    "cvc",
    "ssn",
    "otp",
    "pin",
    "salt",
];

/// Pairs of consecutive words that make a name secret (`api_key`, `private_key`, ...).
const SECRET_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("private", "key"),
    ("access", "key"),
    ("secret", "key"),
    ("signing", "key"),
    ("encryption", "key"),
    ("master", "key"),
    ("card", "number"),
    ("credit", "card"),
    ("cc", "number"),
    ("account", "number"),
];

/// Fragments that mark a name as secret even inside a longer word.
const SECRET_FRAGMENTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "accesskey",
    "credential",
    "cookie",
    "session",
    "authorization",
];

/// Value prefixes of widely used secret formats.
const SECRET_VALUE_PREFIXES: &[&str] = &[
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "xoxb-",
    "xoxp-",
    "ghp_",
    "github_pat_",
    "AKIA",
    "-----BEGIN RSA PRIVATE KEY",
    "-----BEGIN PRIVATE KEY",
    "-----BEGIN EC PRIVATE KEY",
    "-----BEGIN OPENSSH PRIVATE KEY",
];

/// The redaction rules in force. `Default` is what rbscope uses unless configured.
#[derive(Debug, Clone)]
pub struct Rules {
    pub enabled: bool,
    /// Extra name fragments (lower case) that the app declared secret.
    pub extra_names: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            enabled: true,
            extra_names: Vec::new(),
        }
    }
}

impl Rules {
    /// Why a name looks secret, or None. The reason is stored in place of the value.
    pub fn secret_name(&self, name: &str) -> Option<&'static str> {
        if !self.enabled {
            return None;
        }
        let words = words(name);
        if words.iter().any(|w| SECRET_WORDS.contains(&w.as_str())) {
            return Some("name");
        }
        if words
            .windows(2)
            .any(|p| SECRET_PAIRS.contains(&(p[0].as_str(), p[1].as_str())))
        {
            return Some("name");
        }
        let lower = name.to_ascii_lowercase();
        if SECRET_FRAGMENTS.iter().any(|f| lower.contains(f)) {
            return Some("name");
        }
        if self
            .extra_names
            .iter()
            .any(|f| !f.is_empty() && lower.contains(f.as_str()))
        {
            return Some("configured name");
        }
        None
    }

    /// Why a string value looks secret, or None.
    pub fn secret_value(&self, bytes: &[u8]) -> Option<&'static str> {
        if !self.enabled {
            return None;
        }
        if looks_like_card_number(bytes) {
            return Some("card number");
        }
        if SECRET_VALUE_PREFIXES
            .iter()
            .any(|p| bytes.starts_with(p.as_bytes()))
        {
            return Some("secret format");
        }
        if self.has_secret_field(bytes) {
            return Some("secret field");
        }
        None
    }

    /// Whether `bytes` is text that carries values under names of its own, one of them secret:
    /// form data or a query string (`a=1&user%5Bpassword%5D=x`, `/login?token=x`), as a
    /// request's raw body, `QUERY_STRING` or `REQUEST_URI` hold them; or JSON or a Ruby hash's
    /// inspect (`{"password":"x"}`, `{"token"=>"x"}`). Only the first [`FIELD_SCAN_BYTES`] are
    /// looked at (far more than a snapshot keeps of a string).
    fn has_secret_field(&self, bytes: &[u8]) -> bool {
        let bytes = &bytes[..bytes.len().min(FIELD_SCAN_BYTES)];
        let secret = |key: &[u8]| {
            !key.is_empty() && self.secret_name(&String::from_utf8_lossy(key)).is_some()
        };
        // key=value pairs, after any `?`; a key has no spaces (form keys are encoded).
        if bytes.contains(&b'=') {
            let query = match bytes.iter().position(|&b| b == b'?') {
                Some(q) => &bytes[q + 1..],
                None => bytes,
            };
            for pair in query.split(|&b| b == b'&' || b == b';') {
                if let Some(eq) = pair.iter().position(|&b| b == b'=') {
                    let key = &pair[..eq];
                    if !key.iter().any(u8::is_ascii_whitespace) && secret(&percent_decoded(key)) {
                        return true;
                    }
                }
            }
        }
        // "name": or "name"=> (JSON, a hash's inspect).
        let mut at = 0;
        while let Some(open) = bytes[at..].iter().position(|&b| b == b'"') {
            let start = at + open + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            if end >= bytes.len() {
                break;
            }
            let rest = &bytes[end + 1..];
            let after = rest
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .map(|i| &rest[i..])
                .unwrap_or(&[]);
            let is_key = after.starts_with(b":") || after.starts_with(b"=>");
            if is_key && secret(&bytes[start..end]) {
                return true;
            }
            // A key's closing quote does not open the next string.
            at = end + 1;
        }
        false
    }
}

/// How much of a string [`Rules::secret_value`] scans for secret fields.
pub const FIELD_SCAN_BYTES: usize = 1 << 20;

/// `%5B` and `+` as they were: `user%5Bpassword%5D` gives `user[password]`.
fn percent_decoded(key: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(key.len());
    let mut i = 0;
    while i < key.len() {
        match key[i] {
            b'%' if i + 2 < key.len() => match (hex(key[i + 1]), hex(key[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Splits a name into lower-case words at `_`, `-`, `.`, spaces, `@`, `:` and camelCase humps.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if !ch.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        cur.push(ch.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// 13 to 19 digits (spaces and dashes allowed between them) that pass the Luhn check.
pub fn looks_like_card_number(bytes: &[u8]) -> bool {
    if bytes.len() < 13 || bytes.len() > 23 {
        return false;
    }
    let mut digits = [0u8; 23];
    let mut n = 0;
    for &b in bytes {
        match b {
            b'0'..=b'9' => {
                digits[n] = b - b'0';
                n += 1;
            }
            b' ' | b'-' => {}
            _ => return false,
        }
    }
    if !(13..=19).contains(&n) {
        return false;
    }
    let mut sum = 0u32;
    for (i, &d) in digits[..n].iter().rev().enumerate() {
        let mut d = d as u32;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        let r = Rules::default();
        for name in [
            "password",
            "@password",
            "user_password",
            "passwordConfirmation",
            "api_key",
            "apiKey",
            "X-Api-Key",
            "access_token",
            "accesstoken",
            "@secret",
            "session_id",
            "HTTP_AUTHORIZATION",
            "auth",
            "card_number",
            "private_key",
            "cookie",
        ] {
            assert!(r.secret_name(name).is_some(), "{name} should be secret");
        }
        for name in [
            "author", "user", "keyboard", "total", "@items", "pinch", "key",
        ] {
            assert!(r.secret_name(name).is_none(), "{name} should not be secret");
        }
    }

    #[test]
    fn card_numbers() {
        assert!(looks_like_card_number(b"4111111111111111"));
        assert!(looks_like_card_number(b"4111 1111 1111 1111"));
        assert!(looks_like_card_number(b"5500-0000-0000-0004"));
        assert!(!looks_like_card_number(b"4111111111111112"));
        assert!(!looks_like_card_number(b"1234"));
        assert!(!looks_like_card_number(b"hello world 123"));
    }

    #[test]
    fn secret_values_and_disabling() {
        let r = Rules::default();
        assert_eq!(r.secret_value(b"sk_live_abc123"), Some("secret format"));
        assert_eq!(r.secret_value(b"plain text"), None);
        let off = Rules {
            enabled: false,
            ..Rules::default()
        };
        assert_eq!(off.secret_name("password"), None);
        assert_eq!(off.secret_value(b"4111111111111111"), None);
    }

    #[test]
    fn secret_fields_in_form_data_query_strings_and_json() {
        let r = Rules::default();
        for text in [
            "user[name]=ann&user[password]=pw&user[role]=admin",
            "user%5Bname%5D=ann&user%5Bpassword%5D=pw",
            "/login?next=%2F&access_token=abc",
            "a=1;api_key=2",
            "password=",
            r#"{"user":{"name":"ann","password":"pw"}}"#,
            r#"{ "token" : "x" }"#,
            r#"{"user"=>{"pin"=>"1234"}}"#,
            r#"{"note":"say \"hi\"","secret":1}"#,
        ] {
            assert_eq!(
                r.secret_value(text.as_bytes()),
                Some("secret field"),
                "{text}"
            );
        }
        for text in [
            "user[name]=ann&user[role]=admin",
            "/users?page=2",
            "WHERE password = 'x'",
            "a == b",
            "%",
            "%4",
            "x=%zz",
            "x%=1",
            r#"{"name":"password"}"#,
            r#"["password", "token"]"#,
            r#"say "password" twice"#,
            r#"unterminated "password"#,
            "base64/dG9rZW4=",
        ] {
            assert_eq!(r.secret_value(text.as_bytes()), None, "{text}");
        }
        let configured = Rules {
            enabled: true,
            extra_names: vec!["iban".into()],
        };
        assert!(configured
            .secret_value(b"user[iban]=DE89370400440532013000")
            .is_some());
        let off = Rules {
            enabled: false,
            ..Rules::default()
        };
        assert_eq!(off.secret_value(b"password=x"), None);
    }

    #[test]
    fn extra_names() {
        let r = Rules {
            enabled: true,
            extra_names: vec!["iban".into()],
        };
        assert_eq!(r.secret_name("customer_iban"), Some("configured name"));
    }
}
