//! Conditions of breakpoints and logpoints: `order.total > 100 and @user.email =~ /@x\.test$/`.
//!
//! A condition runs inside someone else's production process, at a line that may run a million
//! times a second, so it is not Ruby and nothing in it is ever evaluated as Ruby: `eval` could
//! call any method, change state, allocate without bound, raise or never return. A condition
//! reads only what the capture language of [`crate::selector`] reads — `self`, a local or
//! argument by name, an `@ivar`, each with an optional chain of argument-less reading methods
//! (`order.total`, `@user.email`), read by the agent with the same machinery and the same
//! rules as trace captures — and compares those values with literals. Regular expressions run
//! on the `regex` crate, whose matching time is linear in the text (no catastrophic
//! backtracking) and whose compiled size is capped.
//!
//! ```text
//! order                           truthy: anything but nil and false
//! order.total.nil?                nil
//! order.total > 100               == != < > <= >= with a literal on the right
//! @user.email =~ /@shop\.test$/i  =~ and !~ with a regular expression, flags i, m, x
//! !order.paid? and (a or b)       negation (! or not), and (&&), or (||), parentheses
//!
//! literals: 100  -1_000  2.5  1e3  "text" (escapes \" \\ \n \t \r \0 \#)  'text'  :paid
//!           :"two words"  nil  true  false
//! ```
//!
//! Differences from Ruby, on purpose: `and` binds tighter than `or` (as `&&` and `||` do; Ruby
//! gives `and` and `or` one level); `!` and `not` negate the whole test after them (`!a == 1`
//! is `!(a == 1)`); the value is always on the left and a literal on the right; an integer with
//! a leading zero (Ruby's octal) is refused. In regular expressions `^` and `$` match at line
//! ends as in Ruby, `m` lets `.` match a newline (Ruby's meaning), and the syntax is the
//! `regex` crate's (no look-around or back-references; `\d`, `\w` and `\s` take Unicode
//! digits, letters and spaces where Ruby's take ASCII ones).
//!
//! Evaluation ([`Condition::eval`]) follows Ruby's `==` and `<=>` for the values it knows
//! ([`Value`]): `1 == 1.0`, Integer and Float compare exactly by value, a String equals only a
//! String and a Symbol only a Symbol (`:a == "a"` is false). What cannot be decided is
//! *unknown*, with a reason ([`Why`]): a value the agent could not read (not captured,
//! redacted, not opted in, raised) or a comparison Ruby would raise on (`nil > 1`, `1 < "a"`)
//! or that would need an object's own methods (`order.total == 100` for a BigDecimal).
//! Unknowns combine by three-valued (Kleene) logic: `unknown and false` is false,
//! `unknown or true` is true, `not unknown` is unknown; a condition that ends unknown does not
//! fire, and its reason is what the client shows. So a guard works as in Ruby:
//! `order.total and order.total > 100` is false, not unknown, when `order.total` is nil.

use crate::selector::{Capture, SelectorError};
use regex::bytes::{Regex, RegexBuilder};
use std::cmp::Ordering;
use std::fmt;
use thiserror::Error;

/// The longest condition, in bytes.
pub const MAX_LEN: usize = 1000;
/// The most tests (values read and tested) in one condition.
pub const MAX_TERMS: usize = 64;
/// The deepest nesting of parentheses and negations.
pub const MAX_NESTING: usize = 16;
/// The most memory one compiled regular expression may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Test(Test),
    Not(Box<Condition>),
    /// Two or more; the parser never nests an `And` directly in an `And`.
    And(Vec<Condition>),
    /// Two or more; the parser never nests an `Or` directly in an `Or`.
    Or(Vec<Condition>),
}

/// One captured value and what is asked of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Test {
    pub path: Capture,
    pub check: Check,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// `order`: anything but nil and false.
    Truthy,
    /// `order.nil?`
    IsNil,
    /// `order.total > 100`
    Compare(Op, Literal),
    /// `@user.email =~ /re/`
    Match(Pattern),
    /// `@user.email !~ /re/`
    NotMatch(Pattern),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
        }
    }

    fn orders(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Eq => o.is_eq(),
            Op::Ne => o.is_ne(),
            Op::Lt => o.is_lt(),
            Op::Gt => o.is_gt(),
            Op::Le => o.is_le(),
            Op::Ge => o.is_ge(),
        }
    }
}

/// The right side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Nil,
    Bool(bool),
    Int(i64),
    /// Always finite.
    Float(f64),
    Str(String),
    Sym(String),
}

impl Literal {
    fn kind(&self) -> &'static str {
        match self {
            Literal::Nil => "nil",
            Literal::Bool(true) => "true",
            Literal::Bool(false) => "false",
            Literal::Int(_) => "an Integer",
            Literal::Float(_) => "a Float",
            Literal::Str(_) => "a String",
            Literal::Sym(_) => "a Symbol",
        }
    }
}

/// Regular expression flags, Ruby's letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// `i`: ignore case.
    pub ignore_case: bool,
    /// `m`: `.` matches a newline too.
    pub multiline: bool,
    /// `x`: whitespace and `#` comments in the pattern are ignored.
    pub extended: bool,
}

/// A regular expression, compiled once when the condition is parsed.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    flags: Flags,
    regex: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source && self.flags == other.flags
    }
}

impl Pattern {
    /// `source` as written between the slashes. Err: one line saying why it does not compile.
    pub fn new(source: &str, flags: Flags) -> Result<Pattern, String> {
        let regex = RegexBuilder::new(source)
            .case_insensitive(flags.ignore_case)
            .dot_matches_new_line(flags.multiline)
            .ignore_whitespace(flags.extended)
            .multi_line(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| one_line_regex_error(&e))?;
        Ok(Pattern {
            source: source.to_string(),
            flags,
            regex,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn flags(&self) -> Flags {
        self.flags
    }

    pub fn is_match(&self, text: &[u8]) -> bool {
        self.regex.is_match(text)
    }
}

/// regex's syntax errors draw the pattern over several lines; the line that says what is
/// wrong is the one kept.
fn one_line_regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("error:"))
        .unwrap_or(&text)
        .trim();
    line.lines().next().unwrap_or_default().to_string()
}

/// A captured value as a condition sees it. The agent builds it from the Ruby value it read
/// with the capture machinery; anything that is not one of the simple kinds is `Other`, whose
/// methods a condition never calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A whole String's bytes (a string the agent could not read whole is `Unavailable`).
    Str(Vec<u8>),
    Sym(String),
    /// Any other object, by its class name (`BigDecimal`, `Order`).
    Other(String),
    /// Not read; the reason reads after the value's path: "is redacted", "was not captured",
    /// "raised NoMethodError", "is not read: attribute reads are not opted in".
    Unavailable(String),
}

impl Value {
    /// A String value from text.
    pub fn str(s: &str) -> Value {
        Value::Str(s.as_bytes().to_vec())
    }

    fn kind(&self) -> String {
        match self {
            Value::Nil => "nil".into(),
            Value::Bool(true) => "true".into(),
            Value::Bool(false) => "false".into(),
            Value::Int(_) => "an Integer".into(),
            Value::Float(_) => "a Float".into(),
            Value::Str(_) => "a String".into(),
            Value::Sym(_) => "a Symbol".into(),
            Value::Other(class) => with_article(class),
            Value::Unavailable(_) => "unavailable".into(),
        }
    }
}

fn with_article(name: &str) -> String {
    let vowel = name
        .chars()
        .next()
        .is_some_and(|c| "AEIOUaeiou".contains(c));
    format!("{} {name}", if vowel { "an" } else { "a" })
}

/// What a condition came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    True,
    False,
    /// It could not be decided, and does not fire; the reason is the first unknown that
    /// decided the result.
    Unknown(Why),
}

impl Outcome {
    /// Whether the breakpoint or logpoint fires: only when the condition is true.
    pub fn fires(&self) -> bool {
        matches!(self, Outcome::True)
    }

    fn of(b: bool) -> Outcome {
        if b {
            Outcome::True
        } else {
            Outcome::False
        }
    }
}

/// Why a test is unknown. Equal reasons compare equal, so a client can say each once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Why {
    /// `@user.email is redacted`
    Unavailable { path: String, reason: String },
    /// `order.total > 100: nil and an Integer cannot be ordered (Ruby raises)`
    Invalid { test: String, reason: String },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Unavailable { path, reason } => write!(f, "{path} {reason}"),
            Why::Invalid { test, reason } => write!(f, "{test}: {reason}"),
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConditionError {
    #[error("condition: at column {column}: {message} ({hint})")]
    Syntax {
        /// 1-based, in characters.
        column: usize,
        message: String,
        hint: String,
    },
    #[error("condition: at column {column}: it goes past {max} bytes, it is {len} (test fewer values, or shorter literals)", max = MAX_LEN)]
    TooLong {
        /// The column of the first character past the limit.
        column: usize,
        len: usize,
    },
}

impl ConditionError {
    /// The column (1-based, in characters) the error points at.
    pub fn column(&self) -> usize {
        match self {
            ConditionError::Syntax { column, .. } | ConditionError::TooLong { column, .. } => {
                *column
            }
        }
    }
}

/// Parses a condition.
pub fn parse(text: &str) -> Result<Condition, ConditionError> {
    Condition::parse(text)
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        if text.len() > MAX_LEN {
            let past = (0..=MAX_LEN)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            return Err(ConditionError::TooLong {
                column: column(text, past),
                len: text.len(),
            });
        }
        let tokens = lex(text)?;
        let mut p = Parser {
            text,
            tokens,
            pos: 0,
            terms: 0,
            depth: 0,
        };
        let c = p.or()?;
        match p.peek() {
            None => Ok(c),
            Some(t) if t.tok == Tok::RParen => Err(p.error_at(
                t.start,
                "found ')' that closes nothing".into(),
                "remove it, or open it with '(' before",
            )),
            Some(_) => Err(p.expected(
                "'and', 'or' or the end",
                "join tests with and/or: order.total > 100 and order.paid?",
            )),
        }
    }

    /// The values the condition reads, each once, in the order they appear: what the agent
    /// captures before evaluating it.
    pub fn paths(&self) -> Vec<&Capture> {
        let mut out = Vec::new();
        self.collect_paths(&mut out);
        out
    }

    fn collect_paths<'a>(&'a self, out: &mut Vec<&'a Capture>) {
        match self {
            Condition::Test(t) => {
                if !out.iter().any(|c| c.text == t.path.text) {
                    out.push(&t.path);
                }
            }
            Condition::Not(c) => c.collect_paths(out),
            Condition::And(items) | Condition::Or(items) => {
                for c in items {
                    c.collect_paths(out);
                }
            }
        }
    }

    /// Evaluates the condition over captured values. `lookup` gives the value captured for a
    /// path ([`Condition::paths`]); None means it was not captured.
    pub fn eval(&self, lookup: impl Fn(&Capture) -> Option<Value>) -> Outcome {
        self.eval_dyn(&lookup)
    }

    fn eval_dyn(&self, lookup: &dyn Fn(&Capture) -> Option<Value>) -> Outcome {
        match self {
            Condition::Test(t) => t.eval(lookup),
            Condition::Not(c) => match c.eval_dyn(lookup) {
                Outcome::True => Outcome::False,
                Outcome::False => Outcome::True,
                unknown => unknown,
            },
            Condition::And(items) => {
                let mut unknown = None;
                for c in items {
                    match c.eval_dyn(lookup) {
                        Outcome::False => return Outcome::False,
                        Outcome::True => {}
                        Outcome::Unknown(why) => {
                            unknown.get_or_insert(why);
                        }
                    }
                }
                unknown.map_or(Outcome::True, Outcome::Unknown)
            }
            Condition::Or(items) => {
                let mut unknown = None;
                for c in items {
                    match c.eval_dyn(lookup) {
                        Outcome::True => return Outcome::True,
                        Outcome::False => {}
                        Outcome::Unknown(why) => {
                            unknown.get_or_insert(why);
                        }
                    }
                }
                unknown.map_or(Outcome::False, Outcome::Unknown)
            }
        }
    }
}

impl Test {
    fn eval(&self, lookup: &dyn Fn(&Capture) -> Option<Value>) -> Outcome {
        let unavailable = |reason: &str| {
            Outcome::Unknown(Why::Unavailable {
                path: self.path.text.clone(),
                reason: reason.to_string(),
            })
        };
        let value = match lookup(&self.path) {
            None => return unavailable("was not captured"),
            Some(Value::Unavailable(reason)) => return unavailable(&reason),
            Some(v) => v,
        };
        let decided = match &self.check {
            Check::Truthy => Ok(!matches!(value, Value::Nil | Value::Bool(false))),
            Check::IsNil => Ok(value == Value::Nil),
            Check::Compare(op, lit) => compare(&value, *op, lit),
            Check::Match(p) => matches(&value, p),
            Check::NotMatch(p) => matches(&value, p).map(|m| !m),
        };
        match decided {
            Ok(b) => Outcome::of(b),
            Err(reason) => Outcome::Unknown(Why::Invalid {
                test: self.to_string(),
                reason,
            }),
        }
    }
}

fn other_reason(class: &str) -> String {
    format!(
        "the value is {}; conditions compare nil, true, false, numbers, strings and symbols and never call an object's methods",
        with_article(class)
    )
}

fn compare(value: &Value, op: Op, lit: &Literal) -> Result<bool, String> {
    if !op.orders() {
        let eq = equal(value, lit)?;
        return Ok(eq == (op == Op::Eq));
    }
    let ord = match (value, lit) {
        (Value::Int(a), Literal::Int(b)) => Some(a.cmp(b)),
        (Value::Int(a), Literal::Float(b)) => cmp_int_float(*a, *b),
        (Value::Float(a), Literal::Int(b)) => cmp_int_float(*b, *a).map(Ordering::reverse),
        (Value::Float(a), Literal::Float(b)) => a.partial_cmp(b),
        (Value::Str(a), Literal::Str(b)) => Some(a.as_slice().cmp(b.as_bytes())),
        (Value::Sym(a), Literal::Sym(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Value::Other(class), _) => return Err(other_reason(class)),
        _ => {
            return Err(format!(
                "{} and {} cannot be ordered (Ruby raises)",
                value.kind(),
                lit.kind()
            ))
        }
    };
    // A NaN is neither less, equal nor greater: every ordering is false, as in Ruby.
    Ok(ord.is_some_and(|o| op.holds(o)))
}

fn equal(value: &Value, lit: &Literal) -> Result<bool, String> {
    Ok(match (value, lit) {
        (Value::Nil, Literal::Nil) => true,
        (Value::Bool(a), Literal::Bool(b)) => a == b,
        (Value::Int(a), Literal::Int(b)) => a == b,
        (Value::Int(a), Literal::Float(b)) => cmp_int_float(*a, *b) == Some(Ordering::Equal),
        (Value::Float(a), Literal::Int(b)) => cmp_int_float(*b, *a) == Some(Ordering::Equal),
        (Value::Float(a), Literal::Float(b)) => a == b,
        (Value::Str(a), Literal::Str(b)) => a.as_slice() == b.as_bytes(),
        (Value::Sym(a), Literal::Sym(b)) => a == b,
        // An object is not nil, true or false whatever its `==` says.
        (Value::Other(_), Literal::Nil | Literal::Bool(_)) => false,
        (Value::Other(class), _) => return Err(other_reason(class)),
        _ => false,
    })
}

fn matches(value: &Value, p: &Pattern) -> Result<bool, String> {
    match value {
        Value::Str(bytes) => Ok(p.is_match(bytes)),
        Value::Sym(name) => Ok(p.is_match(name.as_bytes())),
        // `nil =~ /x/` is nil in Ruby.
        Value::Nil => Ok(false),
        Value::Other(class) => Err(other_reason(class)),
        other => Err(format!(
            "{} has no =~ (Ruby raises); only strings and symbols match",
            other.kind()
        )),
    }
}

/// Integer <=> Float exactly, as Ruby does (`2**53 + 1 > 2.0**53`); None with NaN.
fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    // 2^63, exactly representable.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return None;
    }
    if f >= TWO_63 {
        return Some(Ordering::Less);
    }
    if f < -TWO_63 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // Exact: |whole| <= 2^63 and whole is not 2^63, so it fits in an i64.
    let whole_int = whole as i64;
    Some(match i.cmp(&whole_int) {
        Ordering::Equal => {
            let frac = f - whole;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    })
}

// ---- display ------------------------------------------------------------------------------

impl fmt::Display for Condition {
    /// The canonical form: `parse` of it gives the same condition back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Test(t) => write!(f, "{t}"),
            Condition::Not(inner) => match &**inner {
                Condition::Test(t) if matches!(t.check, Check::Truthy | Check::IsNil) => {
                    write!(f, "!{t}")
                }
                Condition::Not(_) => write!(f, "!{inner}"),
                _ => write!(f, "!({inner})"),
            },
            Condition::And(items) => join(f, items, " and ", |c| {
                matches!(c, Condition::And(_) | Condition::Or(_))
            }),
            Condition::Or(items) => join(f, items, " or ", |c| matches!(c, Condition::Or(_))),
        }
    }
}

fn join(
    f: &mut fmt::Formatter<'_>,
    items: &[Condition],
    sep: &str,
    parenthesize: impl Fn(&Condition) -> bool,
) -> fmt::Result {
    for (i, c) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if parenthesize(c) {
            write!(f, "({c})")?;
        } else {
            write!(f, "{c}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path.text;
        match &self.check {
            Check::Truthy => write!(f, "{path}"),
            Check::IsNil => write!(f, "{path}.nil?"),
            Check::Compare(op, lit) => write!(f, "{path} {} {lit}", op.symbol()),
            Check::Match(p) => write!(f, "{path} =~ {p}"),
            Check::NotMatch(p) => write!(f, "{path} !~ {p}"),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)?;
        for (on, letter) in [
            (self.flags.ignore_case, 'i'),
            (self.flags.multiline, 'm'),
            (self.flags.extended, 'x'),
        ] {
            if on {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Nil => f.write_str("nil"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            // Debug keeps a fraction or an exponent, so it reads back as a Float.
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::Str(s) => f.write_str(&quote(s)),
            Literal::Sym(s) if is_symbol_name(s) => write!(f, ":{s}"),
            Literal::Sym(s) => write!(f, ":{}", quote(s)),
        }
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '#' if matches!(chars.peek(), Some('{' | '@' | '$')) => out.push_str("\\#"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// A symbol written without quotes: `:paid`, `:valid?`, `:save!`, `:name=`.
fn is_symbol_name(s: &str) -> bool {
    let base = s.strip_suffix(['?', '!', '=']).unwrap_or(s);
    let mut chars = base.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_char)
}

// ---- lexer --------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Path(String),
    /// `and`, `&&`
    And,
    /// `or`, `||`
    Or,
    /// `not`, `!`
    Not,
    Lit(Literal),
    Regex(String, Flags),
    Cmp(Op),
    Match,
    NotMatch,
    LParen,
    RParen,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

/// Source text as an error message shows it: on one line (control characters escaped) and at
/// most 30 characters.
fn shown(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == 30 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

fn column(text: &str, at: usize) -> usize {
    text.get(..at).map_or(1, |s| s.chars().count() + 1)
}

fn syntax(text: &str, at: usize, message: String, hint: &str) -> ConditionError {
    ConditionError::Syntax {
        column: column(text, at),
        message,
        hint: hint.to_string(),
    }
}

fn lex(text: &str) -> Result<Vec<Token>, ConditionError> {
    let mut lx = Lexer { text, pos: 0 };
    let mut out = Vec::new();
    loop {
        while lx.peek().is_some_and(char::is_whitespace) {
            lx.bump();
        }
        let start = lx.pos;
        let Some(c) = lx.peek() else {
            return Ok(out);
        };
        let tok = lx.token(c)?;
        out.push(Token {
            tok,
            start,
            end: lx.pos,
        });
    }
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

const LITERAL_HINT: &str =
    "a literal is a number, \"string\", 'string', :symbol, nil, true or false";

impl Lexer<'_> {
    fn peek_nth(&self, n: usize) -> Option<char> {
        self.text.get(self.pos..).and_then(|s| s.chars().nth(n))
    }

    fn peek(&self) -> Option<char> {
        self.peek_nth(0)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn bump_n(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    fn err(&self, at: usize, message: String, hint: &str) -> ConditionError {
        syntax(self.text, at, message, hint)
    }

    fn token(&mut self, c: char) -> Result<Tok, ConditionError> {
        let start = self.pos;
        let second = self.peek_nth(1);
        let two = |lx: &mut Lexer, tok: Tok| {
            lx.bump_n(2);
            Ok(tok)
        };
        let one = |lx: &mut Lexer, tok: Tok| {
            lx.bump();
            Ok(tok)
        };
        match (c, second) {
            ('(', _) => one(self, Tok::LParen),
            (')', _) => one(self, Tok::RParen),
            ('=', Some('=')) => two(self, Tok::Cmp(Op::Eq)),
            ('=', Some('~')) => two(self, Tok::Match),
            ('=', _) => Err(self.err(
                start,
                "found '=' alone".into(),
                "a condition compares and never assigns: order.status == :paid",
            )),
            ('!', Some('=')) => two(self, Tok::Cmp(Op::Ne)),
            ('!', Some('~')) => two(self, Tok::NotMatch),
            ('!', _) => one(self, Tok::Not),
            ('<', Some('=')) => two(self, Tok::Cmp(Op::Le)),
            ('<', _) => one(self, Tok::Cmp(Op::Lt)),
            ('>', Some('=')) => two(self, Tok::Cmp(Op::Ge)),
            ('>', _) => one(self, Tok::Cmp(Op::Gt)),
            ('&', Some('&')) => two(self, Tok::And),
            ('|', Some('|')) => two(self, Tok::Or),
            ('&' | '|', _) => Err(self.err(
                start,
                format!("found '{c}' alone"),
                "join tests with and, &&, or, ||",
            )),
            ('"', _) => {
                self.bump();
                Ok(Tok::Lit(Literal::Str(self.double_quoted(start)?)))
            }
            ('\'', _) => {
                self.bump();
                Ok(Tok::Lit(Literal::Str(self.single_quoted(start)?)))
            }
            (':', _) => self.symbol(),
            ('/', _) => self.regex(),
            ('-', _) | ('0'..='9', _) => self.number(),
            ('@', _) => self.path(),
            (c, _) if is_ident_start(c) => self.path(),
            (c, _) => {
                let hint = match c {
                    '?' => "a method ending in ? is read on a value: order.paid? or self.admin?",
                    '$' => "global variables are not read: capture a local, an @ivar or self",
                    '[' => "there is no [] in the capture language: read a method without arguments, order.items.first",
                    _ => "a condition is values, literals, comparisons, and/or/not and parentheses: order.total > 100 and @user",
                };
                Err(self.err(
                    start,
                    format!("unexpected character '{}'", c.escape_debug()),
                    hint,
                ))
            }
        }
    }

    /// The body of a `".."` string, after its opening quote.
    fn double_quoted(&mut self, open: usize) -> Result<String, ConditionError> {
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return Err(self.unclosed(open)),
                Some('"') => return Ok(out),
                Some('\\') => {
                    let c = match self.bump() {
                        None => return Err(self.unclosed(open)),
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('0') => '\0',
                        Some('#') => '#',
                        Some(other) => {
                            return Err(self.err(
                                at,
                                format!("unknown escape '\\{}'", other.escape_debug()),
                                "double-quoted strings know \\\" \\\\ \\n \\t \\r \\0 \\#; in single quotes a backslash stays as written",
                            ))
                        }
                    };
                    out.push(c);
                }
                Some('#') if matches!(self.peek(), Some('{' | '@' | '$')) => {
                    return Err(self.err(
                        at,
                        format!(
                            "'#{}' would interpolate in Ruby",
                            self.peek().unwrap_or('{')
                        ),
                        "conditions never interpolate: write \\# or use single quotes",
                    ))
                }
                Some(c) => out.push(c),
            }
        }
    }

    /// The body of a `'..'` string, after its opening quote: only `\'` and `\\` are escapes.
    fn single_quoted(&mut self, open: usize) -> Result<String, ConditionError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.unclosed(open)),
                Some('\'') => return Ok(out),
                Some('\\') if matches!(self.peek(), Some('\'' | '\\')) => {
                    out.extend(self.bump());
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn unclosed(&self, open: usize) -> ConditionError {
        let quote = self.text.get(open..).and_then(|s| s.chars().next());
        let quote = quote.unwrap_or('"');
        self.err(
            open,
            format!("the string opened here with {quote} is not closed"),
            "end it with the same quote; write \\\" or \\' for one inside",
        )
    }

    fn symbol(&mut self) -> Result<Tok, ConditionError> {
        let start = self.pos;
        self.bump();
        let name = match self.peek() {
            Some('"') => {
                self.bump();
                self.double_quoted(start + 1)?
            }
            Some('\'') => {
                self.bump();
                self.single_quoted(start + 1)?
            }
            Some(c) if is_ident_start(c) => {
                let from = self.pos;
                while self.peek().is_some_and(is_ident_char) {
                    self.bump();
                }
                self.method_suffix();
                self.text
                    .get(from..self.pos)
                    .unwrap_or_default()
                    .to_string()
            }
            _ => {
                return Err(self.err(
                    start,
                    "expected a symbol name after ':'".into(),
                    "write :paid or :\"two words\"",
                ))
            }
        };
        Ok(Tok::Lit(Literal::Sym(name)))
    }

    /// A method name's `?`, `!` or `=`, unless it starts an operator (`!=`, `==`, `=~`).
    fn method_suffix(&mut self) {
        match (self.peek(), self.peek_nth(1)) {
            (Some('?'), _) => {
                self.bump();
            }
            (Some('!' | '='), next) if !matches!(next, Some('=' | '~')) => {
                self.bump();
            }
            _ => {}
        }
    }

    fn regex(&mut self) -> Result<Tok, ConditionError> {
        let start = self.pos;
        self.bump();
        let mut source = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(self.err(
                        start,
                        "the regular expression opened here is not closed".into(),
                        "end it with /; write \\/ for a slash inside",
                    ))
                }
                Some('/') => break,
                Some('\\') => {
                    source.push('\\');
                    match self.bump() {
                        Some(c) => source.push(c),
                        None => continue,
                    }
                }
                Some(c) => source.push(c),
            }
        }
        let mut flags = Flags::default();
        while let Some(c) = self.peek().filter(char::is_ascii_alphabetic) {
            let at = self.pos;
            let flag = match c {
                'i' => &mut flags.ignore_case,
                'm' => &mut flags.multiline,
                'x' => &mut flags.extended,
                _ => {
                    return Err(self.err(
                        at,
                        format!("unknown regular expression flag '{c}'"),
                        "the flags are i (ignore case), m (. matches a newline) and x (spaces and comments ignored)",
                    ))
                }
            };
            if *flag {
                return Err(self.err(
                    at,
                    format!("the flag '{c}' is given twice"),
                    "give each flag once: /re/im",
                ));
            }
            *flag = true;
            self.bump();
        }
        Ok(Tok::Regex(source, flags))
    }

    /// Digits with `_` between them, into `out`; at least one.
    fn digits(&mut self, out: &mut String) -> Result<(), ConditionError> {
        const HINT: &str = "numbers are written 100, -1_000, 2.5 or 1e3";
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            let found = self
                .peek()
                .map_or("the end".to_string(), |c| format!("'{}'", c.escape_debug()));
            return Err(self.err(self.pos, format!("expected a digit, found {found}"), HINT));
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                out.push(c);
            } else if c == '_' {
                if !self.peek_nth(1).is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.err(
                        self.pos,
                        "'_' in a number must stand between digits".into(),
                        HINT,
                    ));
                }
            } else {
                break;
            }
            self.bump();
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Tok, ConditionError> {
        const HINT: &str = "numbers are written 100, -1_000, 2.5 or 1e3";
        let start = self.pos;
        let mut clean = String::new();
        if self.peek() == Some('-') {
            self.bump();
            clean.push('-');
        }
        let int_from = clean.len();
        self.digits(&mut clean)?;
        let int_part = clean.get(int_from..).unwrap_or_default();
        if int_part.len() > 1 && int_part.starts_with('0') {
            return Err(self.err(
                start,
                "a leading 0 makes Ruby read an octal number".into(),
                "write the number without leading zeros",
            ));
        }
        let mut float = false;
        if self.peek() == Some('.') && self.peek_nth(1).is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
            clean.push('.');
            self.digits(&mut clean)?;
            float = true;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let signed = matches!(self.peek_nth(1), Some('+' | '-'));
            let digit_at = if signed { 2 } else { 1 };
            if self.peek_nth(digit_at).is_some_and(|c| c.is_ascii_digit()) {
                clean.push('e');
                self.bump();
                if signed {
                    clean.extend(self.bump());
                }
                self.digits(&mut clean)?;
                float = true;
            }
        }
        if let Some(c) = self.peek().filter(|&c| is_ident_char(c) || c == '.') {
            return Err(self.err(
                self.pos,
                format!("unexpected '{c}' right after a number"),
                HINT,
            ));
        }
        if float {
            match clean.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Tok::Lit(Literal::Float(x))),
                _ => Err(self.err(start, "the number is too large for a Float".into(), HINT)),
            }
        } else {
            clean
                .parse::<i64>()
                .map(|i| Tok::Lit(Literal::Int(i)))
                .map_err(|_| {
                    self.err(
                    start,
                    "the integer does not fit in 64 bits".into(),
                    "conditions compare integers from -9223372036854775808 to 9223372036854775807",
                )
                })
        }
    }

    /// A value's path (`order.total`, `@user.email`, `self.name`) or a keyword.
    fn path(&mut self) -> Result<Tok, ConditionError> {
        let start = self.pos;
        if self.peek() == Some('@') {
            self.bump();
            if !self.peek().is_some_and(is_ident_start) {
                return Err(self.err(
                    start,
                    "expected an instance variable's name after '@'".into(),
                    "write @user or @user.email",
                ));
            }
        }
        while self.peek().is_some_and(is_ident_char) {
            self.bump();
        }
        while self.peek() == Some('.') {
            if !self.peek_nth(1).is_some_and(is_ident_start) {
                return Err(self.err(
                    self.pos,
                    "expected a method name after '.'".into(),
                    "a path reads methods without arguments: order.customer.email",
                ));
            }
            self.bump();
            while self.peek().is_some_and(is_ident_char) {
                self.bump();
            }
            self.method_suffix();
        }
        let word = self.text.get(start..self.pos).unwrap_or_default();
        Ok(match word {
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "nil" => Tok::Lit(Literal::Nil),
            "true" => Tok::Lit(Literal::Bool(true)),
            "false" => Tok::Lit(Literal::Bool(false)),
            _ => Tok::Path(word.to_string()),
        })
    }
}

// ---- parser -------------------------------------------------------------------------------

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    terms: usize,
    depth: usize,
}

const VALUE_WANTED: &str =
    "a value to test (self, a local, an @ivar or a path such as order.total)";

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_is(&self, tok: &Tok) -> bool {
        self.peek().is_some_and(|t| &t.tok == tok)
    }

    fn error_at(&self, at: usize, message: String, hint: &str) -> ConditionError {
        syntax(self.text, at, message, hint)
    }

    /// `expected WHAT, found 'token'` at the next token (or the end).
    fn expected(&self, what: &str, hint: &str) -> ConditionError {
        let (at, found) = match self.peek() {
            Some(t) => {
                let token = self.text.get(t.start..t.end).unwrap_or_default();
                (t.start, format!("'{}'", shown(token)))
            }
            None => (self.text.len(), "the end".to_string()),
        };
        self.error_at(at, format!("expected {what}, found {found}"), hint)
    }

    fn enter(&mut self, at: usize) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error_at(
                at,
                format!("more than {MAX_NESTING} levels of parentheses and negations"),
                "write it flatter: !(a or b) is !a and !b",
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Condition, ConditionError> {
        let mut items = vec![self.and()?];
        while self.peek_is(&Tok::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(combine(items, true))
    }

    fn and(&mut self) -> Result<Condition, ConditionError> {
        let mut items = vec![self.not()?];
        while self.peek_is(&Tok::And) {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(combine(items, false))
    }

    fn not(&mut self) -> Result<Condition, ConditionError> {
        let mut negations = 0;
        while let Some(t) = self.peek().filter(|t| t.tok == Tok::Not) {
            let at = t.start;
            self.pos += 1;
            negations += 1;
            self.enter(at)?;
        }
        let mut c = self.primary()?;
        for _ in 0..negations {
            c = Condition::Not(Box::new(c));
        }
        self.depth -= negations;
        Ok(c)
    }

    fn primary(&mut self) -> Result<Condition, ConditionError> {
        let Some(t) = self.peek() else {
            return Err(self.expected(VALUE_WANTED, "write a test such as order.total > 100"));
        };
        let at = t.start;
        match &t.tok {
            Tok::LParen => {
                self.pos += 1;
                self.enter(at)?;
                let c = self.or()?;
                if !self.peek_is(&Tok::RParen) {
                    let what = format!("')' to close the '(' at column {}", column(self.text, at));
                    return Err(self.expected(&what, "close every '(' with ')'"));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(c)
            }
            Tok::Path(path) => {
                let path = path.clone();
                self.pos += 1;
                self.test(&path, at)
            }
            Tok::Lit(_) | Tok::Regex(..) => Err(self.expected(
                VALUE_WANTED,
                "the value comes first and the literal after it: order.total > 100",
            )),
            _ => Err(self.expected(VALUE_WANTED, "write a test such as order.total > 100")),
        }
    }

    fn test(&mut self, text: &str, at: usize) -> Result<Condition, ConditionError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error_at(
                at,
                format!("more than {MAX_TERMS} tests"),
                "test fewer values in one condition",
            ));
        }
        let mut path = Capture::parse(text).map_err(|e| {
            let SelectorError::Invalid(_, why) = e;
            self.error_at(
                at,
                format!("cannot read {why}"),
                "a value is self, a local or an @ivar, then methods without arguments: order.total",
            )
        })?;
        let is_nil = path.chain.last().is_some_and(|m| m == "nil?");
        if is_nil {
            path.chain.pop();
            if let Some(head) = path.text.strip_suffix(".nil?") {
                path.text = head.to_string();
            }
        }
        let Some(next) = self.peek().cloned() else {
            return Ok(Condition::Test(Test {
                path,
                check: if is_nil { Check::IsNil } else { Check::Truthy },
            }));
        };
        let check = match next.tok {
            Tok::Cmp(_) | Tok::Match | Tok::NotMatch if is_nil => {
                return Err(self.error_at(
                    next.start,
                    format!("a comparison after '{text}'"),
                    "'.nil?' is a test on its own: order.total.nil? or !order.total.nil?",
                ))
            }
            Tok::Cmp(op) => {
                self.pos += 1;
                Check::Compare(op, self.literal(op)?)
            }
            Tok::Match => {
                self.pos += 1;
                Check::Match(self.pattern("=~")?)
            }
            Tok::NotMatch => {
                self.pos += 1;
                Check::NotMatch(self.pattern("!~")?)
            }
            _ if is_nil => Check::IsNil,
            _ => Check::Truthy,
        };
        Ok(Condition::Test(Test { path, check }))
    }

    fn literal(&mut self, op: Op) -> Result<Literal, ConditionError> {
        let sym = op.symbol();
        let what = format!("a literal after '{sym}'");
        let Some(t) = self.peek() else {
            return Err(self.expected(&what, LITERAL_HINT));
        };
        match &t.tok {
            Tok::Lit(Literal::Nil | Literal::Bool(_)) if op.orders() => Err(self.expected(
                &format!("a number, string or symbol after '{sym}'"),
                "only numbers, strings and symbols are ordered; test nil with order.total.nil?",
            )),
            Tok::Lit(lit) => {
                let lit = lit.clone();
                self.pos += 1;
                Ok(lit)
            }
            Tok::Path(_) => Err(self.expected(
                &what,
                &format!("compare a value with a literal: order.total {sym} 100"),
            )),
            Tok::Regex(..) => Err(self.expected(
                &what,
                "a regular expression goes after =~: @user.email =~ /@shop\\.test$/",
            )),
            _ => Err(self.expected(&what, LITERAL_HINT)),
        }
    }

    fn pattern(&mut self, op: &str) -> Result<Pattern, ConditionError> {
        match self.peek() {
            Some(Token {
                tok: Tok::Regex(source, flags),
                start,
                ..
            }) => {
                let at = *start;
                let p = Pattern::new(source, *flags).map_err(|why| {
                    self.error_at(
                        at,
                        format!("the regular expression does not compile: {why}"),
                        "conditions use the regex crate's syntax: no look-around or back-references",
                    )
                })?;
                self.pos += 1;
                Ok(p)
            }
            _ => Err(self.expected(
                &format!("a regular expression after '{op}'"),
                "write it between slashes: @user.email =~ /@shop\\.test$/i",
            )),
        }
    }
}

/// One condition, or all of them joined by `and` (or `or`); a joined child of the same kind
/// (from parentheses) is spliced in, so `a and (b and c)` is `a and b and c`.
fn combine(mut items: Vec<Condition>, or: bool) -> Condition {
    if items.len() == 1 {
        if let Some(one) = items.pop() {
            return one;
        }
    }
    let mut flat = Vec::with_capacity(items.len());
    for c in items {
        match c {
            Condition::Or(inner) if or => flat.extend(inner),
            Condition::And(inner) if !or => flat.extend(inner),
            c => flat.push(c),
        }
    }
    if or {
        Condition::Or(flat)
    } else {
        Condition::And(flat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `s`, and checks that its canonical form parses back to the same condition.
    fn p(s: &str) -> Condition {
        let c = parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let shown = c.to_string();
        let again = parse(&shown).unwrap_or_else(|e| panic!("{s:?} shown as {shown:?}: {e}"));
        assert_eq!(again, c, "{s:?} shown as {shown:?}");
        assert_eq!(again.to_string(), shown, "the canonical form is stable");
        c
    }

    fn err(s: &str) -> String {
        match parse(s) {
            Ok(c) => panic!("{s:?} was accepted as {c}"),
            Err(e) => e.to_string(),
        }
    }

    fn col(s: &str) -> usize {
        parse(s).map_or_else(|e| e.column(), |c| panic!("{s:?} was accepted as {c}"))
    }

    fn eval(s: &str, values: &[(&str, Value)]) -> Outcome {
        p(s).eval(|c: &Capture| {
            values
                .iter()
                .find(|(k, _)| *k == c.text)
                .map(|(_, v)| v.clone())
        })
    }

    fn is(s: &str, values: &[(&str, Value)]) -> bool {
        match eval(s, values) {
            Outcome::True => true,
            Outcome::False => false,
            Outcome::Unknown(why) => panic!("{s:?} is unknown: {why}"),
        }
    }

    fn unknown(s: &str, values: &[(&str, Value)]) -> Why {
        match eval(s, values) {
            Outcome::Unknown(why) => why,
            other => panic!("{s:?} is {other:?}, not unknown"),
        }
    }

    fn test_of(c: &Condition) -> &Test {
        match c {
            Condition::Test(t) => t,
            other => panic!("{other} is not one test"),
        }
    }

    #[test]
    fn paths_are_the_capture_language() {
        let c = p("order.total > 100 and @user.email and self.name.size > 3 and ok.valid?");
        let texts: Vec<&str> = c.paths().iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            ["order.total", "@user.email", "self.name.size", "ok.valid?"]
        );
        let paths = c.paths();
        assert_eq!(paths[0].root, crate::selector::Root::Arg("order".into()));
        assert_eq!(paths[0].chain, ["total"]);
        assert_eq!(paths[1].root, crate::selector::Root::Ivar("@user".into()));
        assert_eq!(paths[2].root, crate::selector::Root::SelfValue);
        // Each path once, `.nil?` is a test and not a read.
        let c = p("a > 1 and a < 5 or a.nil? or !(b.c.nil?) or b.c == 2");
        let texts: Vec<&str> = c.paths().iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["a", "b.c"]);
        assert_eq!(p("x.nil?.foo").paths()[0].text, "x.nil?.foo");
    }

    #[test]
    fn tests_and_literals() {
        let t = |s: &str| test_of(&p(s)).check.clone();
        assert_eq!(t("order"), Check::Truthy);
        assert_eq!(t("order.paid?"), Check::Truthy);
        assert_eq!(t("order.total.nil?"), Check::IsNil);
        assert_eq!(
            t("a == 1_000_000"),
            Check::Compare(Op::Eq, Literal::Int(1_000_000))
        );
        assert_eq!(t("a != -5"), Check::Compare(Op::Ne, Literal::Int(-5)));
        assert_eq!(t("a < 2.5"), Check::Compare(Op::Lt, Literal::Float(2.5)));
        assert_eq!(
            t("a > -0.25"),
            Check::Compare(Op::Gt, Literal::Float(-0.25))
        );
        assert_eq!(
            t("a <= 1e3"),
            Check::Compare(Op::Le, Literal::Float(1000.0))
        );
        assert_eq!(
            t("a >= 1_5.0_1E-1_0"),
            Check::Compare(Op::Ge, Literal::Float(15.01e-10))
        );
        assert_eq!(
            t("a == -9223372036854775808"),
            Check::Compare(Op::Eq, Literal::Int(i64::MIN))
        );
        assert_eq!(t("a == nil"), Check::Compare(Op::Eq, Literal::Nil));
        assert_eq!(t("a == true"), Check::Compare(Op::Eq, Literal::Bool(true)));
        assert_eq!(
            t("a != false"),
            Check::Compare(Op::Ne, Literal::Bool(false))
        );
        assert_eq!(
            t("a == :paid"),
            Check::Compare(Op::Eq, Literal::Sym("paid".into()))
        );
        assert_eq!(
            t("a == :valid?"),
            Check::Compare(Op::Eq, Literal::Sym("valid?".into()))
        );
        assert_eq!(
            t("a == :\"two words\""),
            Check::Compare(Op::Eq, Literal::Sym("two words".into()))
        );
        assert_eq!(
            t("a == :'x'"),
            Check::Compare(Op::Eq, Literal::Sym("x".into()))
        );
        let s = |text: &str| Check::Compare(Op::Eq, Literal::Str(text.into()));
        assert_eq!(
            t(r#"a == "say \"hi\"\n\t\\ \0 \# #x""#),
            s("say \"hi\"\n\t\\ \0 # #x")
        );
        assert_eq!(t(r"a == 'it\'s \\ \n'"), s("it's \\ \\n"));
        assert_eq!(t(r##"a == 'é "#{x}"'"##), s("é \"#{x}\""));
        assert_eq!(t(r#"a == """#), s(""));
        // Spacing does not matter; the operator needs none.
        assert_eq!(p("a==1"), p("  a   ==\t1 "));
        assert_eq!(p("a.b!=1"), p("a.b != 1"));
        assert_eq!(p("a=~/x/"), p("a =~ /x/"));
    }

    #[test]
    fn canonical_form() {
        for (written, canonical) in [
            ("order", "order"),
            ("  order.total>100", "order.total > 100"),
            ("a == 1.0", "a == 1.0"),
            ("a == 1e20", "a == 1e20"),
            ("a < 0.000001", "a < 1e-6"),
            ("a == 1_000", "a == 1000"),
            ("a == 'x'", "a == \"x\""),
            ("a == '#{x}'", "a == \"\\#{x}\""),
            ("a == :\"x\"", "a == :x"),
            ("a == :\"a b\"", "a == :\"a b\""),
            ("a =~ /x\\/y/mix", "a =~ /x\\/y/imx"),
            ("a !~ //", "a !~ //"),
            ("not a", "!a"),
            ("not a.nil?", "!a.nil?"),
            ("! a == 1", "!(a == 1)"),
            ("not not a", "!!a"),
            ("!(!(a == 1))", "!!(a == 1)"),
            ("a && b || c", "a and b or c"),
            ("a and (b and c)", "a and b and c"),
            ("(a or b) or c", "a or b or c"),
            ("(a or b) and c", "(a or b) and c"),
            ("!(a and b) or ((c))", "!(a and b) or c"),
            ("a and not (b or c.nil?)", "a and !(b or c.nil?)"),
        ] {
            assert_eq!(p(written).to_string(), canonical, "{written:?}");
        }
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tightest() {
        let t = |s: &str| Condition::Test(test_of(&p(s)).clone());
        let (a, b, c) = (t("a"), t("b"), t("c"));
        let not = |x: &Condition| Condition::Not(Box::new(x.clone()));
        assert_eq!(
            p("a or b and c"),
            Condition::Or(vec![a.clone(), Condition::And(vec![b.clone(), c.clone()])])
        );
        assert_eq!(
            p("a and b or c"),
            Condition::Or(vec![Condition::And(vec![a.clone(), b.clone()]), c.clone()])
        );
        assert_eq!(
            p("(a or b) and c"),
            Condition::And(vec![Condition::Or(vec![a.clone(), b.clone()]), c.clone()])
        );
        assert_eq!(p("not a and b"), Condition::And(vec![not(&a), b.clone()]));
        assert_eq!(p("!a or b"), Condition::Or(vec![not(&a), b.clone()]));
        assert_eq!(
            p("!(a or b)"),
            not(&Condition::Or(vec![a.clone(), b.clone()]))
        );
        assert_eq!(p("a || b && c"), p("a or b and c"));
        // Evaluated: true or (false and false) is true; (true or false) and false is false.
        let vals = [
            ("a", Value::Bool(true)),
            ("b", Value::Bool(false)),
            ("c", Value::Bool(false)),
        ];
        assert!(is("a or b and c", &vals));
        assert!(!is("(a or b) and c", &vals));
        assert!(!is("!a or b", &vals));
        assert!(is("!(a and b)", &vals));
        assert!(is("not b and not c", &vals));
    }

    #[test]
    fn truthiness_and_nil() {
        for (v, truthy) in [
            (Value::Nil, false),
            (Value::Bool(false), false),
            (Value::Bool(true), true),
            (Value::Int(0), true),
            (Value::Float(0.0), true),
            (Value::str(""), true),
            (Value::Sym("x".into()), true),
            (Value::Other("Order".into()), true),
        ] {
            let vals = [("x", v.clone())];
            assert_eq!(is("x", &vals), truthy, "{v:?}");
            assert_eq!(is("!x", &vals), !truthy, "{v:?}");
            assert_eq!(is("x.nil?", &vals), v == Value::Nil, "{v:?}");
            assert_eq!(is("!x.nil?", &vals), v != Value::Nil, "{v:?}");
            assert_eq!(is("x == nil", &vals), v == Value::Nil, "{v:?}");
            assert_eq!(is("x != nil", &vals), v != Value::Nil, "{v:?}");
        }
    }

    #[test]
    fn every_comparison() {
        let five = [("x", Value::Int(5))];
        for (s, want) in [
            ("x == 5", true),
            ("x == 4", false),
            ("x != 5", false),
            ("x != 4", true),
            ("x < 6", true),
            ("x < 5", false),
            ("x > 4", true),
            ("x > 5", false),
            ("x <= 5", true),
            ("x <= 4", false),
            ("x >= 5", true),
            ("x >= 6", false),
            ("x == \"5\"", false),
            ("x == :x", false),
            ("x == true", false),
        ] {
            assert_eq!(is(s, &five), want, "{s}");
        }
        let s = [
            ("s", Value::str("banana")),
            ("y", Value::Sym("paid".into())),
        ];
        for (cond, want) in [
            ("s == \"banana\"", true),
            ("s == 'banana'", true),
            ("s != \"apple\"", true),
            ("s > \"apple\"", true),
            ("s < \"bananas\"", true),
            ("s >= \"banana\"", true),
            ("s < \"Banana\"", false),
            ("s == :banana", false),
            ("y == :paid", true),
            ("y == \"paid\"", false),
            ("y != \"paid\"", true),
            ("y < :z", true),
            ("y > :pa", true),
        ] {
            assert_eq!(is(cond, &s), want, "{cond}");
        }
        let b = [("t", Value::Bool(true)), ("f", Value::Bool(false))];
        assert!(is(
            "t == true and f == false and t != false and f != nil",
            &b
        ));
        // Strings compare by bytes, as Ruby's do.
        let bytes = [("s", Value::Str(b"caf\xc3\xa9".to_vec()))];
        assert!(is("s == \"café\"", &bytes));
        assert!(is("s > \"cafe\"", &bytes));
    }

    #[test]
    fn integers_and_floats_compare_by_value() {
        let int = |i: i64| [("x", Value::Int(i))];
        let float = |f: f64| [("x", Value::Float(f))];
        assert!(is("x == 1.0", &int(1)));
        assert!(is("x == 1", &float(1.0)));
        assert!(is("x != 1", &float(1.5)));
        assert!(is("x < 1.5", &int(1)));
        assert!(is("x > 1", &float(1.5)));
        assert!(is("x > -2", &float(-1.5)));
        assert!(is("x < -1.5", &int(-2)));
        assert!(is("x > -1.5", &int(-1)));
        assert!(is("x == 0", &float(-0.0)));
        assert!(is("x == -0.0", &int(0)));
        // Exactly, not through f64: 2**53 + 1 is not 2.0**53, as in Ruby.
        let big = 9_007_199_254_740_993_i64;
        assert!(!is("x == 9007199254740992.0", &int(big)));
        assert!(is("x > 9007199254740992.0", &int(big)));
        assert!(is("x < 9007199254740993", &float(9_007_199_254_740_992.0)));
        // i64::MAX is below 2.0**63.
        assert!(is("x < 9.223372036854775807e18", &int(i64::MAX)));
        assert!(is("x > -9.3e18", &int(i64::MIN)));
        assert!(is("x == -9.223372036854775808e18", &int(i64::MIN)));
        assert!(is("x > 9223372036854775807", &float(f64::INFINITY)));
        assert!(is("x < -9223372036854775808", &float(f64::NEG_INFINITY)));
        // NaN equals nothing and is in no order; Ruby's answers, not an error.
        let nan = float(f64::NAN);
        for (s, want) in [
            ("x == 1", false),
            ("x != 1", true),
            ("x < 1", false),
            ("x > 1", false),
            ("x <= 1.0", false),
            ("x >= 1.0", false),
        ] {
            assert_eq!(is(s, &nan), want, "{s}");
        }
        assert_eq!(cmp_int_float(3, 2.5), Some(Ordering::Greater));
        assert_eq!(cmp_int_float(-3, -2.5), Some(Ordering::Less));
        assert_eq!(cmp_int_float(-2, -2.5), Some(Ordering::Greater));
    }

    #[test]
    fn regular_expressions_and_their_flags() {
        let mail = [
            ("e", Value::str("Ann@Shop.TEST\nline two")),
            ("n", Value::Nil),
        ];
        assert!(is(r"e =~ /@shop\.test$/i", &mail));
        assert!(!is(r"e =~ /@shop\.test$/", &mail));
        // ^ and $ match at lines, as in Ruby; \A and \z at the whole text.
        assert!(is(r"e =~ /^line/", &mail));
        assert!(!is(r"e =~ /\Aline/", &mail));
        assert!(is(r"e =~ /two\z/", &mail));
        // m: '.' crosses a newline.
        assert!(!is(r"e =~ /TEST.line/", &mail));
        assert!(is(r"e =~ /TEST.line/m", &mail));
        // x: spaces and comments in the pattern are ignored.
        assert!(is("e =~ /A nn @ # the user\n/x", &mail));
        assert!(!is("e =~ /A nn @/", &mail));
        assert!(is("e !~ /nobody/", &mail));
        assert!(!is("e !~ /Ann/", &mail));
        assert!(is(r"e =~ /s\/?hop/i", &mail));
        // nil =~ /x/ is nil in Ruby (falsy), so nil !~ /x/ is true.
        assert!(!is("n =~ /x/", &mail));
        assert!(is("n !~ /x/", &mail));
        // A Symbol matches by its name.
        assert!(is("s =~ /^pa/", &[("s", Value::Sym("paid".into()))]));
        // Bytes that are not UTF-8 do not stop a match.
        assert!(is("s =~ /ok/", &[("s", Value::Str(b"\xff ok".to_vec()))]));
        let p = match &test_of(&p("e =~ /a/xim")).check {
            Check::Match(p) => p.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            p.flags(),
            Flags {
                ignore_case: true,
                multiline: true,
                extended: true
            }
        );
        assert_eq!(p.source(), "a");
        // The same source with other flags is another pattern.
        assert_ne!(parse("e =~ /a/"), parse("e =~ /a/i"));
    }

    #[test]
    fn regular_expression_errors() {
        let e = err("e =~ /(?<=a)b/");
        assert!(
            e.starts_with("condition: at column 6: the regular expression does not compile: "),
            "{e}"
        );
        assert!(e.contains("look-around"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = err("e =~ /(/");
        assert!(!e.contains('\n') && e.contains("column 6"), "{e}");
        // Too big to compile within the limit.
        let e = err("e =~ /\\w{1000}{1000}/");
        assert!(!e.contains('\n') && e.contains("does not compile"), "{e}");
        assert_eq!(
            err("e =~ /x/o"),
            "condition: at column 9: unknown regular expression flag 'o' (the flags are i (ignore case), m (. matches a newline) and x (spaces and comments ignored))"
        );
        assert!(err("e =~ /x/ii").contains("column 10: the flag 'i' is given twice"));
        assert!(
            err("e =~ /x").contains("column 6: the regular expression opened here is not closed")
        );
        assert!(err("e =~ /x\\/").contains("not closed"));
        assert!(err("e =~ \"x\"")
            .contains("column 6: expected a regular expression after '=~', found '\"x\"'"));
        assert!(err("e !~ x").contains("expected a regular expression after '!~', found 'x'"));
        assert!(err("e == /x/").contains("a regular expression goes after =~"));
    }

    #[test]
    fn unknown_values_follow_three_valued_logic() {
        let vals = [
            ("t", Value::Bool(true)),
            ("f", Value::Bool(false)),
            ("@user.email", Value::Unavailable("is redacted".into())),
        ];
        let redacted = Why::Unavailable {
            path: "@user.email".into(),
            reason: "is redacted".into(),
        };
        assert_eq!(redacted.to_string(), "@user.email is redacted");
        for s in [
            "@user.email",
            "@user.email.nil?",
            "@user.email == \"a\"",
            "@user.email =~ /a/",
            "!@user.email",
            "@user.email and t",
            "t and @user.email",
            "@user.email or f",
            "f or @user.email",
            "!(@user.email or f)",
        ] {
            assert_eq!(unknown(s, &vals), redacted, "{s}");
            assert!(!eval(s, &vals).fires(), "{s}");
        }
        for (s, want) in [
            ("@user.email and f", false),
            ("f and @user.email", false),
            ("@user.email or t", true),
            ("t or @user.email", true),
            ("!(@user.email and f)", true),
        ] {
            assert_eq!(is(s, &vals), want, "{s}");
        }
        assert!(eval("t or @user.email", &vals).fires());
        // A value not captured at all.
        assert_eq!(
            unknown("gone > 1", &vals).to_string(),
            "gone was not captured"
        );
        // The first unknown is the one told.
        let other = [
            ("a", Value::Unavailable("raised NoMethodError".into())),
            ("b", Value::Unavailable("is redacted".into())),
        ];
        assert_eq!(
            unknown("a and b", &other).to_string(),
            "a raised NoMethodError"
        );
        assert_eq!(unknown("b or a", &other).to_string(), "b is redacted");
    }

    #[test]
    fn comparisons_ruby_refuses_are_unknown_with_the_reason() {
        let vals = [
            ("n", Value::Nil),
            ("i", Value::Int(1)),
            ("s", Value::str("a")),
            ("y", Value::Sym("a".into())),
            ("t", Value::Bool(true)),
            ("d", Value::Other("BigDecimal".into())),
            ("o", Value::Other("Order".into())),
        ];
        assert_eq!(
            unknown("n > 1", &vals).to_string(),
            "n > 1: nil and an Integer cannot be ordered (Ruby raises)"
        );
        assert_eq!(
            unknown("i < \"a\"", &vals).to_string(),
            "i < \"a\": an Integer and a String cannot be ordered (Ruby raises)"
        );
        assert!(unknown("s < :a", &vals)
            .to_string()
            .contains("a String and a Symbol"));
        assert!(unknown("y >= 'a'", &vals)
            .to_string()
            .contains("a Symbol and a String"));
        assert!(unknown("t > 0", &vals)
            .to_string()
            .contains("true and an Integer"));
        assert!(unknown("i =~ /1/", &vals)
            .to_string()
            .contains("an Integer has no =~"));
        assert!(unknown("t !~ /1/", &vals)
            .to_string()
            .contains("true has no =~"));
        // An object's own == or <=> is never called: only nil/true/false are decided.
        let d = unknown("d == 100", &vals).to_string();
        assert!(d.starts_with("d == 100: the value is a BigDecimal;"), "{d}");
        assert!(unknown("d > 1.5", &vals)
            .to_string()
            .contains("a BigDecimal"));
        assert!(unknown("o =~ /x/", &vals).to_string().contains("an Order"));
        assert!(!is("o == nil", &vals) && is("o != nil", &vals) && !is("o == false", &vals));
        // The Ruby guard idiom decides without the refused comparison.
        assert!(!is("n and n > 100", &vals));
        assert!(!is("!n.nil? and n > 100", &vals));
        assert!(is("n.nil? or n > 100", &vals));
        assert!(matches!(
            eval("n > 100", &vals),
            Outcome::Unknown(Why::Invalid { .. })
        ));
    }

    #[test]
    fn error_messages_name_the_column_what_was_expected_and_what_to_do() {
        assert_eq!(
            err("order.total > order"),
            "condition: at column 15: expected a literal after '>', found 'order' (compare a value with a literal: order.total > 100)"
        );
        assert_eq!(
            err(""),
            "condition: at column 1: expected a value to test (self, a local, an @ivar or a path such as order.total), found the end (write a test such as order.total > 100)"
        );
        assert_eq!(
            err("a > 1 and"),
            "condition: at column 10: expected a value to test (self, a local, an @ivar or a path such as order.total), found the end (write a test such as order.total > 100)"
        );
        assert_eq!(
            err("100 < order.total"),
            "condition: at column 1: expected a value to test (self, a local, an @ivar or a path such as order.total), found '100' (the value comes first and the literal after it: order.total > 100)"
        );
        assert_eq!(
            err("a > 1 b"),
            "condition: at column 7: expected 'and', 'or' or the end, found 'b' (join tests with and/or: order.total > 100 and order.paid?)"
        );
        assert_eq!(
            err("(a or b"),
            "condition: at column 8: expected ')' to close the '(' at column 1, found the end (close every '(' with ')')"
        );
        assert!(err("a or b)").starts_with("condition: at column 7: found ')' that closes nothing"));
        assert!(err("a = 1").starts_with("condition: at column 3: found '=' alone ("));
        assert!(err("a & b").starts_with("condition: at column 3: found '&' alone"));
        assert!(err("a | b").starts_with("condition: at column 3: found '|' alone"));
        assert!(err("a > nil")
            .contains("column 5: expected a number, string or symbol after '>', found 'nil'"));
        assert!(err("a <= true").contains("after '<='"));
        assert!(err("a ==").contains("column 5: expected a literal after '==', found the end"));
        assert!(err("a == b == c").contains("found 'b'"));
        assert!(
            err("a == 1 == 2").contains("column 8: expected 'and', 'or' or the end, found '=='")
        );
        assert!(err("a.nil? == true").contains("column 8: a comparison after 'a.nil?'"));
        assert!(err("a. b").contains("column 2: expected a method name after '.'"));
        assert!(err("a.").contains("column 2: expected a method name after '.'"));
        assert!(err("@ == 1").contains("column 1: expected an instance variable's name after '@'"));
        assert!(err("$x").contains("column 1: unexpected character '$' (global variables"));
        assert!(err("a[0] == 1").contains("column 2: unexpected character '['"));
        assert!(err("paid?").contains("column 5: unexpected character '?'"));
        assert!(err("a == 5 and ;").contains("column 12: unexpected character ';'"));
        // Paths the capture language refuses, with its reason.
        let e = err("x > 1 and order.save!");
        assert!(
            e.starts_with("condition: at column 11: cannot read ")
                && e.contains("captures only read"),
            "{e}"
        );
        assert!(err("Order.count > 1").contains("column 1: cannot read"));
        assert!(err("a.b.c.d.e.f.g.h.i.j > 1").contains("at most 8 calls"));
        // Columns count characters, not bytes.
        assert_eq!(col("a == 'é' and é ="), 16);
        for s in ["a > 1", "a", "(a)", "a and b"] {
            assert!(parse(s).is_ok());
        }
        // Control characters in the text are shown escaped.
        assert!(err("a == -\n").contains("expected a digit, found '\\n'"));
        assert!(err("a\u{1}").contains("unexpected character '\\u{1}'"));
        assert!(err("a == \"\\\n\"").contains("unknown escape '\\\\n'"));
        assert!(err("a and\n\t(b\n").contains("found the end"));
        // One line each, always with what to do.
        for s in [
            "a == -\n",
            "a\u{1}",
            "a ==\n\"\\\n\"",
            "a ==\n\n\n",
            "",
            "(",
            ")",
            "a >",
            "a =~",
            "'",
            "\"",
            ":",
            "/",
            "-",
            "a == 1.5.x",
            "!",
            "not",
        ] {
            let e = err(s);
            assert!(
                !e.contains('\n') && e.ends_with(')') && e.contains("at column"),
                "{s:?}: {e}"
            );
        }
    }

    #[test]
    fn literal_errors() {
        assert!(err("a == 08").contains("column 6: a leading 0 makes Ruby read an octal number"));
        assert!(err("a == -01").contains("octal"));
        assert!(p("a == 0").to_string() == "a == 0" && p("a == 0.5").to_string() == "a == 0.5");
        assert!(err("a == 1__0").contains("column 7: '_' in a number must stand between digits"));
        assert!(err("a == 1_").contains("between digits"));
        assert!(err("a == 100abc").contains("column 9: unexpected 'a' right after a number"));
        assert!(err("a == 0x1F").contains("unexpected 'x'"));
        assert!(err("a == 1.5.2").contains("unexpected '.'"));
        assert!(err("a == 1.").contains("unexpected '.'"));
        assert!(err("a == 9223372036854775808")
            .contains("column 6: the integer does not fit in 64 bits"));
        assert!(err("a == 1e999").contains("too large for a Float"));
        assert!(err("a == -x").contains("column 7: expected a digit, found 'x'"));
        assert!(err("a == \"x").contains("column 6: the string opened here with \" is not closed"));
        assert!(err("a == 'x").contains("with ' is not closed"));
        assert!(err("a == \"\\q\"").contains("column 7: unknown escape '\\q'"));
        assert!(err("a == \"#{x}\"").contains("column 7: '#{' would interpolate in Ruby"));
        assert!(err("a == \"#@x\"").contains("'#@' would interpolate"));
        assert!(err("a == :").contains("column 6: expected a symbol name after ':'"));
        assert!(err("a == :\"x").contains("not closed"));
    }

    #[test]
    fn limits() {
        let long = format!("a == \"{}\"", "x".repeat(MAX_LEN));
        assert_eq!(
            err(&long),
            format!(
                "condition: at column 1001: it goes past 1000 bytes, it is {} (test fewer values, or shorter literals)",
                long.len()
            )
        );
        // Counted in characters, from the last whole one within the limit.
        let wide = format!("a == \"{}\"", "é".repeat(MAX_LEN));
        assert_eq!(col(&wide), 6 + (MAX_LEN - 6) / 2 + 1);
        let at_limit = format!("a == \"{}\"", "x".repeat(MAX_LEN - 7));
        assert_eq!(at_limit.len(), MAX_LEN);
        p(&at_limit);
        // Tests: 64 pass, the 65th is refused where it starts.
        let tests = |n: usize| vec!["a"; n].join(" or ");
        assert!(matches!(&p(&tests(MAX_TERMS)), Condition::Or(v) if v.len() == MAX_TERMS));
        let e = err(&tests(MAX_TERMS + 1));
        assert_eq!(
            e,
            format!(
                "condition: at column {}: more than 64 tests (test fewer values in one condition)",
                MAX_TERMS * 5 + 1
            )
        );
        // Nesting: parentheses and negations together, 16 deep at most.
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        p(&nested(MAX_NESTING));
        assert!(err(&nested(MAX_NESTING + 1)).contains("column 17: more than 16 levels"));
        p(&format!("{}a", "!".repeat(MAX_NESTING)));
        assert!(err(&format!("{}a", "!".repeat(MAX_NESTING + 1)))
            .contains("column 17: more than 16 levels"));
        p(&format!("{}a{}", "!(".repeat(8), ")".repeat(8)));
        assert!(
            err(&format!("{}a{}", "!(".repeat(9), ")".repeat(9))).contains("more than 16 levels")
        );
        // Sequential groups do not add up.
        p(&vec![nested(MAX_NESTING); 4].join(" and "));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "order.total > 100 and @user.email =~ /@shop\\.test$/i",
            "!(a or b.c.nil?) and (c == :\"x y\" or d != 'it\\'s' or e <= -1_000)",
            "a == \"tab\\there\\r\\n\\0\\\\\\\"#not {x} \\#{y}\"",
            "x == 1.5e-300 or x == -0.0 or x == 123456789.125 or x == 1e15 or x == 1e16",
            "s =~ /a b # c\n/x or s !~ /(?i)\\d+\\/\\w/m",
            "self.name.size >= 3 || @x.valid? && !@y",
            "not not not a == 1",
            "a == :save! or a == :name= or a == :ok? or a == :\"1x\" or a == :\"\"",
        ] {
            p(s);
        }
    }

    #[test]
    fn any_text_parses_or_is_refused_without_panicking() {
        // Pieces that meet each other at every boundary the lexer has; a fixed seed keeps it
        // repeatable.
        const PIECES: &[&str] = &[
            "a", "@b", ".c", ".nil?", "?", "!", "=", "==", "=~", "!~", "<", ">=", "&&", "||",
            "and", "or", "not", "(", ")", " ", "1", "-", "_", "0", ".5", "e3", "\"", "'", "\\",
            "#{", ":", ":x", "/", "/i", "x", "nil", "true", "é", "\n", "self", "[", "$",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = next() % 12;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            match parse(&text) {
                Ok(c) => {
                    accepted += 1;
                    assert_eq!(
                        parse(&c.to_string()).as_ref(),
                        Ok(&c),
                        "{text:?} shown as {c}"
                    );
                }
                Err(e) => {
                    let shown = e.to_string();
                    assert!(
                        !shown.contains('\n') && shown.ends_with(')'),
                        "{text:?}: {shown}"
                    );
                    assert!(
                        e.column() >= 1 && e.column() <= text.chars().count() + 1,
                        "{text:?}: {shown}"
                    );
                }
            }
        }
        // The pieces make valid conditions often enough for the round trip to be exercised.
        assert!(accepted > 200, "{accepted}");
    }
}
