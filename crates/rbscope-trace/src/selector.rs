//! Trace selectors: which methods to trace, and which values to capture when they are called.
//!
//! ```text
//! User#save            an instance method          Net::HTTP#request
//! Process.pid          a singleton (class) method  Dir.        every singleton method of Dir
//! Redis#               every instance method       sleep       a method of that name anywhere
//! Foo#bar(self, arg, @ivar, arg.id, self.name.size)       values captured at call time
//! ```
//! A leading `?` (`?Redis#call`) makes a selector optional: if it names nothing loaded, that is
//! reported and the trace goes on (presets use it); otherwise it is an error.
//!
//! Captures are a small, safe language rather than code: `self`, an argument by name, an
//! instance variable, each optionally followed by a chain of argument-less method names. A
//! chain may not name a method ending in `!` or `=` (those change things), and nothing is ever
//! evaluated as Ruby source.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Klass#name`: instance methods.
    Instance,
    /// `Klass.name`: singleton methods.
    Singleton,
    /// `name`: a method of that name on any class or module.
    Anywhere,
}

impl Kind {
    /// The word lib/rbscope/live.rb resolves the kind by.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Instance => "instance",
            Kind::Singleton => "singleton",
            Kind::Anywhere => "anywhere",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    SelfValue,
    Arg(String),
    Ivar(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// As the user wrote it (normalized spacing), used as the value's name in the output.
    pub text: String,
    pub root: Root,
    pub chain: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// `Net::HTTP`; None for [`Kind::Anywhere`].
    pub owner: Option<String>,
    pub kind: Kind,
    /// None: every method of `owner` (`Redis#`, `Dir.`).
    pub method: Option<String>,
    pub captures: Vec<Capture>,
    /// `?Foo#bar`: naming nothing is reported, not an error.
    pub optional: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("selector {0:?}: {1} (examples: 'User#save', 'Process.pid', 'Redis#', 'sleep', 'Foo#bar(self, arg, @ivar)')")]
    Invalid(String, String),
}

fn invalid(text: &str, why: impl Into<String>) -> SelectorError {
    SelectorError::Invalid(text.to_string(), why.into())
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if is_ident_start(c))
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn is_constant(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_uppercase()) && is_ident(s)
}

const OPERATORS: &[&str] = &[
    "[]", "[]=", "+", "-", "*", "/", "%", "**", "==", "!=", "===", "=~", "!~", "<=>", "<", "<=",
    ">", ">=", "<<", ">>", "&", "|", "^", "~", "!", "+@", "-@", "`",
];

/// A method name Ruby accepts in `def` (identifiers with `?`, `!` or `=`, operators).
pub fn is_method_name(s: &str) -> bool {
    if OPERATORS.contains(&s) {
        return true;
    }
    let base = s
        .strip_suffix('?')
        .or_else(|| s.strip_suffix('!'))
        .or_else(|| s.strip_suffix('='))
        .unwrap_or(s);
    is_ident(base)
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let text = text.trim();
        let (optional, text) = match text.strip_prefix('?') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, text),
        };
        if text.is_empty() {
            return Err(invalid(text, "it is empty"));
        }
        let (target, captures) = match text.find('(') {
            Some(open) => {
                let Some(inner) = text[open + 1..].strip_suffix(')') else {
                    return Err(invalid(text, "the capture list must end with ')'"));
                };
                (&text[..open], parse_captures(text, inner)?)
            }
            None => (text, Vec::new()),
        };
        let target = target.trim();
        // The last '#' or '.' that is not inside an operator name separates owner and method.
        let split = target
            .char_indices()
            .filter(|(_, c)| *c == '#' || *c == '.')
            .map(|(i, _)| i)
            .find(|&i| is_constant_path(&target[..i]));
        let (owner, kind, method) = match split {
            Some(i) => {
                let kind = if &target[i..i + 1] == "#" {
                    Kind::Instance
                } else {
                    Kind::Singleton
                };
                let name = &target[i + 1..];
                let method = if name.is_empty() {
                    None
                } else if is_method_name(name) {
                    Some(name.to_string())
                } else {
                    return Err(invalid(text, format!("{name:?} is not a method name")));
                };
                (Some(target[..i].to_string()), kind, method)
            }
            None if is_method_name(target) => (None, Kind::Anywhere, Some(target.to_string())),
            None => {
                return Err(invalid(
                    text,
                    "expected Class#method, Class.method, Class#, Class. or a method name",
                ))
            }
        };
        if method.is_none() && !captures.is_empty() {
            return Err(invalid(text, "captures need one method, not a whole class"));
        }
        Ok(Selector {
            owner,
            kind,
            method,
            captures,
            optional,
        })
    }

    /// The names of the arguments its captures read, in order.
    pub fn arg_names(&self) -> impl Iterator<Item = &str> {
        self.captures.iter().filter_map(|c| match &c.root {
            Root::Arg(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The selector written back in its normal form (without the optional marker).
    pub fn describe(&self) -> String {
        let mut s = match (&self.owner, self.kind) {
            (Some(o), Kind::Instance) => format!("{o}#"),
            (Some(o), Kind::Singleton) => format!("{o}."),
            _ => String::new(),
        };
        if let Some(m) = &self.method {
            s.push_str(m);
        }
        if !self.captures.is_empty() {
            let list: Vec<&str> = self.captures.iter().map(|c| c.text.as_str()).collect();
            s.push_str(&format!("({})", list.join(", ")));
        }
        s
    }
}

fn is_constant_path(s: &str) -> bool {
    let s = s.strip_prefix("::").unwrap_or(s);
    !s.is_empty() && s.split("::").all(is_constant)
}

fn parse_captures(text: &str, inner: &str) -> Result<Vec<Capture>, SelectorError> {
    let mut out = Vec::new();
    for part in inner.split(',') {
        out.push(parse_capture(text, part)?);
    }
    if out.len() > 16 {
        return Err(invalid(text, "at most 16 captures per selector"));
    }
    Ok(out)
}

impl Capture {
    /// One capture on its own (`order.total`, `@user.email`, `self`), as a selector's list
    /// writes it; the trace conditions of [`crate::condition`] name their values this way.
    pub fn parse(text: &str) -> Result<Capture, SelectorError> {
        parse_capture(text, text)
    }
}

/// One capture of a list; errors name `text`, the whole selector.
fn parse_capture(text: &str, part: &str) -> Result<Capture, SelectorError> {
    let part = part.trim();
    if part.is_empty() {
        return Err(invalid(text, "an empty capture"));
    }
    let mut pieces = part.split('.');
    let head = pieces.next().unwrap_or_default().trim();
    let root = if head == "self" {
        Root::SelfValue
    } else if let Some(ivar) = head.strip_prefix('@') {
        if !is_ident(ivar) {
            return Err(invalid(
                text,
                format!("{head:?} is not an instance variable"),
            ));
        }
        Root::Ivar(head.to_string())
    } else if is_ident(head) && !head.starts_with(|c: char| c.is_uppercase()) {
        Root::Arg(head.to_string())
    } else {
        return Err(invalid(
            text,
            format!("{part:?}: a capture starts with self, an argument name or an @ivar (code is never evaluated)"),
        ));
    };
    let mut chain = Vec::new();
    for m in pieces {
        let m = m.trim();
        if m.ends_with('!') || m.ends_with('=') {
            return Err(invalid(
                text,
                format!("{part:?}: .{m} may change the object; captures only read"),
            ));
        }
        let base = m.strip_suffix('?').unwrap_or(m);
        if !is_ident(base) {
            return Err(invalid(
                text,
                format!("{part:?}: {m:?} is not a method name without arguments"),
            ));
        }
        chain.push(m.to_string());
    }
    if chain.len() > 8 {
        return Err(invalid(
            text,
            format!("{part:?}: at most 8 calls in a chain"),
        ));
    }
    let mut norm = head.to_string();
    for m in &chain {
        norm.push('.');
        norm.push_str(m);
    }
    Ok(Capture {
        text: norm,
        root,
        chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn targets() {
        let s = sel("User#save");
        assert_eq!(
            (s.owner.as_deref(), s.kind, s.method.as_deref()),
            (Some("User"), Kind::Instance, Some("save"))
        );
        let s = sel("Net::HTTP#request");
        assert_eq!(s.owner.as_deref(), Some("Net::HTTP"));
        let s = sel("Process.pid");
        assert_eq!(
            (s.kind, s.method.as_deref()),
            (Kind::Singleton, Some("pid"))
        );
        let s = sel("Redis#");
        assert_eq!((s.kind, s.method), (Kind::Instance, None));
        let s = sel("Dir.");
        assert_eq!((s.kind, s.method), (Kind::Singleton, None));
        let s = sel("sleep");
        assert_eq!((s.owner, s.kind), (None, Kind::Anywhere));
        assert_eq!(sel("Hash#[]=").method.as_deref(), Some("[]="));
        assert_eq!(sel("Array#<<").method.as_deref(), Some("<<"));
        assert_eq!(sel("Foo.valid?").method.as_deref(), Some("valid?"));
        assert_eq!(sel("A::B::C#x=").describe(), "A::B::C#x=");
        assert_eq!(sel("::Top#x").owner.as_deref(), Some("::Top"));
        let opt = sel("?Redis::Client#call(command)");
        assert!(opt.optional && !sel("Redis#call").optional);
        assert_eq!(opt.describe(), "Redis::Client#call(command)");
    }

    #[test]
    fn kinds_and_argument_names() {
        let names: Vec<&str> = [sel("A#b"), sel("A.b"), sel("b")]
            .iter()
            .map(|s| s.kind.name())
            .collect();
        assert_eq!(names, ["instance", "singleton", "anywhere"]);
        let s = sel("Foo#bar(self, id, @x, opts.size, id)");
        assert_eq!(s.arg_names().collect::<Vec<_>>(), ["id", "opts", "id"]);
    }

    #[test]
    fn captures() {
        let s = sel("Foo#bar(self, arg, @ivar,  arg.id , self.name.size, ok.valid?)");
        let texts: Vec<&str> = s.captures.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "self",
                "arg",
                "@ivar",
                "arg.id",
                "self.name.size",
                "ok.valid?"
            ]
        );
        assert_eq!(s.captures[2].root, Root::Ivar("@ivar".into()));
        assert_eq!(s.captures[3].chain, vec!["id".to_string()]);
        assert_eq!(
            s.describe(),
            "Foo#bar(self, arg, @ivar, arg.id, self.name.size, ok.valid?)"
        );
    }

    #[test]
    fn one_capture_alone() {
        let c = Capture::parse(" order.total ").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.text.as_str(), &c.root, c.chain.as_slice()),
            (
                "order.total",
                &Root::Arg("order".into()),
                &["total".to_string()][..]
            )
        );
        assert_eq!(
            Capture::parse("@user").map(|c| c.root),
            Ok(Root::Ivar("@user".into()))
        );
        for bad in ["", "Order.count", "a.save!", "a,b", "@", "a.b(1)"] {
            assert!(Capture::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "Foo#bar(",
            "Foo#bar(system('id'))",
            "Foo#bar(a.destroy!)",
            "Foo#bar(a.name=)",
            "Foo#bar(a.b(1))",
            "Foo#bar(Kernel.exit)",
            "Foo#bar(,)",
            "Foo#ba r",
            "foo::Bar#x",
            "Redis#(self)",
            "1abc",
            "Foo#bar(@)",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = Selector::parse("Foo#bar(a.save!)").unwrap_err().to_string();
        assert!(e.contains("captures only read"), "{e}");
    }
}
