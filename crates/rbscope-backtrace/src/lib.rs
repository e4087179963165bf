//! Better-backtrace labels.
//!
//! A frame's label is built from facts, never from Ruby's backtrace strings (their format
//! changed in 3.4): the class path, how the method is attached to it, the method name, how many
//! blocks deep the frame is, and the parameter names. Whoever gathers the facts (the agent from
//! its own VM, the CLI from another process's memory or a snapshot) formats them here, so every
//! place rbscope shows a frame shows the same label.
//!
//! ```text
//! ModuleB::ClassB#hello()            instance method
//! ModuleC.hello()                    method on a class or module object
//! ClassD$singleton#hello()           method on one specific object
//! ClassG$refinement@Mod::Refines#hello()
//! ClassF#hello{block}{block}()       nested blocks
//! ClassF#hello{block}{rescue}()      a rescue clause (in a block): the clause's frame stands
//!                                    for the block's, as in Ruby 3.4+ (see hidden_by_clauses)
//! Object#method(a, b, *c, (), f:, g:, **h, &i)
//! ```

use serde::{Deserialize, Serialize};
use std::fmt::{self, Write};

mod placement;
pub use placement::{place_frames, LikeC, Place, Shape};

/// How the method of a frame hangs off its class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MethodKind {
    /// An instance method: `Klass#meth`.
    Instance,
    /// A method on a class or module object: `Klass.meth`.
    ClassLevel,
    /// A method defined on one specific object: `Klass$singleton#meth`, where `Klass` is the
    /// object's class.
    ObjectSingleton,
    /// A method in a refinement of `Klass`, defined in module `refined_in`.
    Refinement { refined_in: String },
    /// Code that is not inside a method (`<main>`, `<top (required)>`, `<class:Foo>`): the label
    /// is the code's own name, attached to the class of `self` as a singleton.
    TopLevel,
}

/// One parameter, as `Method#parameters` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Param {
    Req(Option<String>),
    Opt(String),
    Rest(Option<String>),
    Post(Option<String>),
    KeyReq(String),
    Key(String),
    KeyRest(Option<String>),
    NoKey,
    Block(Option<String>),
}

/// The parameter list of a frame. `Unknown` prints as `(*)`, the notation for C functions
/// whose arity is variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Params {
    Known(Vec<Param>),
    Unknown,
}

/// A frame that runs a `rescue` or `ensure` clause: Ruby gives those their own frames
/// (`rescue in foo`, `ensure in foo`), so the label says which part of the method it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clause {
    Rescue,
    Ensure,
}

impl Clause {
    pub fn name(self) -> &'static str {
        match self {
            Clause::Rescue => "rescue",
            Clause::Ensure => "ensure",
        }
    }
}

/// How deep in blocks a frame is and whether it runs a rescue or ensure clause, from its
/// iseq's label as the VM names it when compiling: `block in m` (1), `block (3 levels) in m`
/// (3), `rescue in block in m` (1, rescue). Ruby counts only blocks in the level, so a block
/// inside a rescue clause is just a block.
pub fn nesting_of_label(label: &str) -> (u32, Option<Clause>) {
    let (clause, rest) = if let Some(r) = label.strip_prefix("rescue in ") {
        (Some(Clause::Rescue), r)
    } else if let Some(r) = label.strip_prefix("ensure in ") {
        (Some(Clause::Ensure), r)
    } else {
        (None, label)
    };
    let depth = if let Some(r) = rest.strip_prefix("block (") {
        r.split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1)
    } else if rest.starts_with("block in ") {
        1
    } else {
        0
    };
    (depth, clause)
}

/// Which frames a backtrace leaves out because a rescue or ensure clause stands for them:
/// Ruby runs a clause in a frame of its own (`rescue in m`) pushed above the frame it belongs
/// to. From Ruby 3.4 on, Ruby's backtraces show the clause's frame alone, labelled as the
/// method, at the clause's line, and leave out the frame it belongs to (and, for a clause
/// inside a clause, every frame up to the method's). rbscope does the same on every Ruby, so a
/// stack has the same frames and labels whatever the version (snapshot fingerprints are built
/// from them); the clause's frame keeps its `{rescue}`/`{ensure}` mark.
///
/// `frames` is the stack innermost first: `None` for a C frame, `Some(is_clause)` for a Ruby
/// frame. Returns, for each frame, whether it is left out (as vm_backtrace.c does: the Ruby
/// frame after a clause frame is skipped, C frames are never skipped and never end a run).
pub fn hidden_by_clauses(frames: impl IntoIterator<Item = Option<bool>>) -> Vec<bool> {
    let mut skip_next = false;
    frames
        .into_iter()
        .map(|f| match f {
            None => false,
            Some(is_clause) => {
                let hidden = skip_next;
                skip_next = is_clause;
                hidden
            }
        })
        .collect()
}

impl Params {
    /// A C function's parameters: Ruby has no names for them, so an unnamed required one
    /// prints as `_` (`Kernel#method(_)`), not as the `()` of a destructuring pattern.
    pub fn of_c_function(self) -> Params {
        match self {
            Params::Known(list) => Params::Known(
                list.into_iter()
                    .map(|p| match p {
                        Param::Req(None) => Param::Req(Some("_".into())),
                        other => other,
                    })
                    .collect(),
            ),
            Params::Unknown => Params::Unknown,
        }
    }
}

/// Everything needed to print one frame's label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameFacts {
    pub class_path: String,
    pub method_name: String,
    pub kind: MethodKind,
    pub block_depth: u32,
    /// Set when the frame runs a rescue or ensure clause (after any blocks it is in).
    #[serde(default)]
    pub clause: Option<Clause>,
    pub params: Params,
}

impl Param {
    /// Builds a parameter from `Method#parameters`' pair (kind name, optional name).
    pub fn from_parts(kind: &str, name: Option<String>) -> Option<Param> {
        Some(match kind {
            "req" => Param::Req(name),
            "opt" => Param::Opt(name.unwrap_or_default()),
            "rest" => Param::Rest(name),
            "post" => Param::Post(name),
            "keyreq" => Param::KeyReq(name.unwrap_or_default()),
            "key" => Param::Key(name.unwrap_or_default()),
            "keyrest" => Param::KeyRest(name),
            "nokey" => Param::NoKey,
            "block" => Param::Block(name),
            _ => return None,
        })
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Unnamed required params are destructuring patterns `(d, e)`: printed as `()`.
        let named = |n: &Option<String>| n.clone().unwrap_or_default();
        match self {
            Param::Req(None) | Param::Post(None) => f.write_str("()"),
            Param::Req(Some(n)) | Param::Post(Some(n)) | Param::Opt(n) => f.write_str(n),
            Param::Rest(n) => write!(f, "*{}", named(n)),
            Param::KeyReq(n) | Param::Key(n) => write!(f, "{n}:"),
            Param::KeyRest(n) => write!(f, "**{}", named(n)),
            Param::NoKey => f.write_str("**nil"),
            Param::Block(n) => write!(f, "&{}", named(n)),
        }
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Params::Unknown => f.write_str("(*)"),
            Params::Known(ps) => {
                f.write_char('(')?;
                for (i, p) in ps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                f.write_char(')')
            }
        }
    }
}

impl FrameFacts {
    /// The label without parameters: `ClassF#hello{block}`.
    pub fn label(&self) -> String {
        let mut s = String::with_capacity(self.class_path.len() + self.method_name.len() + 16);
        s.push_str(&self.class_path);
        match &self.kind {
            MethodKind::Instance => s.push('#'),
            MethodKind::ClassLevel => s.push('.'),
            MethodKind::ObjectSingleton | MethodKind::TopLevel => s.push_str("$singleton#"),
            MethodKind::Refinement { refined_in } => {
                s.push_str("$refinement@");
                s.push_str(refined_in);
                s.push('#');
            }
        }
        s.push_str(&self.method_name);
        for _ in 0..self.block_depth {
            s.push_str("{block}");
        }
        if let Some(c) = self.clause {
            s.push('{');
            s.push_str(c.name());
            s.push('}');
        }
        s
    }

    /// The full label with parameters: `ClassF#hello{block}(a, b)`.
    pub fn label_with_params(&self) -> String {
        format!("{}{}", self.label(), self.params)
    }
}

/// One frame of a better backtrace: `path:line:in Label(params)`.
pub fn format_line(path: &str, lineno: i64, facts: &FrameFacts) -> String {
    format!("{path}:{lineno}:in {}", facts.label_with_params())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(class: &str, m: &str, kind: MethodKind, depth: u32, params: Params) -> FrameFacts {
        FrameFacts {
            class_path: class.into(),
            method_name: m.into(),
            kind,
            block_depth: depth,
            clause: None,
            params,
        }
    }

    #[test]
    fn seed_labels() {
        let none = || Params::Known(vec![]);
        assert_eq!(
            facts("ModuleB::ClassB", "hello", MethodKind::Instance, 0, none()).label_with_params(),
            "ModuleB::ClassB#hello()"
        );
        assert_eq!(
            facts("ModuleC", "hello", MethodKind::ClassLevel, 0, none()).label_with_params(),
            "ModuleC.hello()"
        );
        assert_eq!(
            facts("ClassD", "hello", MethodKind::ObjectSingleton, 0, none()).label_with_params(),
            "ClassD$singleton#hello()"
        );
        assert_eq!(
            facts(
                "ClassG",
                "hello",
                MethodKind::Refinement {
                    refined_in: "ContainsRefinement::RefinesClassG".into()
                },
                0,
                none()
            )
            .label_with_params(),
            "ClassG$refinement@ContainsRefinement::RefinesClassG#hello()"
        );
        assert_eq!(
            facts("Object", "<main>", MethodKind::TopLevel, 2, none()).label_with_params(),
            "Object$singleton#<main>{block}{block}()"
        );
        assert_eq!(
            facts("Kernel", "eval", MethodKind::Instance, 0, Params::Unknown).label_with_params(),
            "Kernel#eval(*)"
        );
    }

    #[test]
    fn complex_params() {
        let ps = [
            ("req", Some("a")),
            ("opt", Some("b")),
            ("rest", Some("c")),
            ("req", None),
            ("keyreq", Some("f")),
            ("key", Some("g")),
            ("keyrest", Some("h")),
            ("block", Some("i")),
        ]
        .iter()
        .filter_map(|(k, n)| Param::from_parts(k, n.map(String::from)))
        .collect();
        let f = facts(
            "Object",
            "method_with_complex_parameters",
            MethodKind::Instance,
            0,
            Params::Known(ps),
        );
        assert_eq!(
            format_line("x.rb", 121, &f),
            "x.rb:121:in Object#method_with_complex_parameters(a, b, *c, (), f:, g:, **h, &i)"
        );
    }

    #[test]
    fn clause_frames_stand_for_the_frames_they_belong_to() {
        // rescue in m, m, <main>
        assert_eq!(
            hidden_by_clauses([Some(true), Some(false), Some(false)]),
            [false, true, false]
        );
        // a C frame called from the clause, the clause, m
        assert_eq!(
            hidden_by_clauses([None, Some(true), Some(false)]),
            [false, false, true]
        );
        // rescue in rescue in m, rescue in m, m, Array#each (C), <main>
        assert_eq!(
            hidden_by_clauses([Some(true), Some(true), Some(false), None, Some(false)]),
            [false, true, true, false, false]
        );
        assert_eq!(
            hidden_by_clauses([Some(false), None, Some(false)]),
            [false, false, false]
        );
    }

    #[test]
    fn nesting_from_vm_labels() {
        assert_eq!(nesting_of_label("m"), (0, None));
        assert_eq!(nesting_of_label("block in m"), (1, None));
        assert_eq!(nesting_of_label("block (3 levels) in <main>"), (3, None));
        assert_eq!(nesting_of_label("rescue in m"), (0, Some(Clause::Rescue)));
        assert_eq!(
            nesting_of_label("rescue in block (2 levels) in m"),
            (2, Some(Clause::Rescue))
        );
        assert_eq!(
            nesting_of_label("ensure in block in m"),
            (1, Some(Clause::Ensure))
        );
        let mut f = facts(
            "Object",
            "m",
            MethodKind::Instance,
            2,
            Params::Known(vec![]),
        );
        f.clause = Some(Clause::Rescue);
        assert_eq!(f.label_with_params(), "Object#m{block}{block}{rescue}()");
    }
}
