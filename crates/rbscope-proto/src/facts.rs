//! The facts of a stack frame, as the wire carries them.
//!
//! A [`crate::StackFrame`] carries what a better-backtrace label is made of, so the CLI can
//! print it like every other frame. Those facts are `rbscope_backtrace::FrameFacts`, but the
//! protocol keeps its own copy of the type: a field or variant added to the backtrace crate for
//! its own needs would otherwise change the protocol's bytes without anyone bumping
//! [`crate::PROTOCOL_VERSION`], and an agent and a CLI built a day apart would misread each
//! other. These types are frozen with the protocol (tests/golden.rs checks their bytes); they
//! mirror what the protocol carries (unchanged since version 5): the same fields, in the same
//! order, with the same serde attributes.
//!
//! The conversions to and from the backtrace crate's types live here, and rbscope-proto keeps
//! its dependency on rbscope-backtrace for them alone. They could not live in the backtrace
//! crate (it sits below the protocol: the agent, the VM reader and the CLI use it without any
//! wire), and in the consumers they would have to be written twice, as functions (the agent
//! builds frames, the CLI reads them; neither crate owns either type). Here they are written
//! once, by destructuring every field and matching every variant: a new field or variant in
//! the backtrace crate is a compile error in this file, where whoever adds it decides whether
//! the wire carries it (a new protocol version) or not.

use serde::{Deserialize, Serialize};

use rbscope_backtrace as bt;

/// Everything needed to print one frame's label (`rbscope_backtrace::FrameFacts` on the wire).
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

/// How the method of a frame hangs off its class (`rbscope_backtrace::MethodKind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MethodKind {
    Instance,
    ClassLevel,
    ObjectSingleton,
    Refinement { refined_in: String },
    TopLevel,
}

/// One parameter, as `Method#parameters` reports it (`rbscope_backtrace::Param`).
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

/// The parameter list of a frame (`rbscope_backtrace::Params`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Params {
    Known(Vec<Param>),
    Unknown,
}

/// A frame that runs a `rescue` or `ensure` clause (`rbscope_backtrace::Clause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clause {
    Rescue,
    Ensure,
}

impl From<bt::FrameFacts> for FrameFacts {
    fn from(f: bt::FrameFacts) -> Self {
        let bt::FrameFacts {
            class_path,
            method_name,
            kind,
            block_depth,
            clause,
            params,
        } = f;
        FrameFacts {
            class_path,
            method_name,
            kind: kind.into(),
            block_depth,
            clause: clause.map(Into::into),
            params: params.into(),
        }
    }
}

impl From<FrameFacts> for bt::FrameFacts {
    fn from(f: FrameFacts) -> Self {
        let FrameFacts {
            class_path,
            method_name,
            kind,
            block_depth,
            clause,
            params,
        } = f;
        bt::FrameFacts {
            class_path,
            method_name,
            kind: kind.into(),
            block_depth,
            clause: clause.map(Into::into),
            params: params.into(),
        }
    }
}

impl From<bt::MethodKind> for MethodKind {
    fn from(k: bt::MethodKind) -> Self {
        match k {
            bt::MethodKind::Instance => MethodKind::Instance,
            bt::MethodKind::ClassLevel => MethodKind::ClassLevel,
            bt::MethodKind::ObjectSingleton => MethodKind::ObjectSingleton,
            bt::MethodKind::Refinement { refined_in } => MethodKind::Refinement { refined_in },
            bt::MethodKind::TopLevel => MethodKind::TopLevel,
        }
    }
}

impl From<MethodKind> for bt::MethodKind {
    fn from(k: MethodKind) -> Self {
        match k {
            MethodKind::Instance => bt::MethodKind::Instance,
            MethodKind::ClassLevel => bt::MethodKind::ClassLevel,
            MethodKind::ObjectSingleton => bt::MethodKind::ObjectSingleton,
            MethodKind::Refinement { refined_in } => bt::MethodKind::Refinement { refined_in },
            MethodKind::TopLevel => bt::MethodKind::TopLevel,
        }
    }
}

impl From<bt::Param> for Param {
    fn from(p: bt::Param) -> Self {
        match p {
            bt::Param::Req(n) => Param::Req(n),
            bt::Param::Opt(n) => Param::Opt(n),
            bt::Param::Rest(n) => Param::Rest(n),
            bt::Param::Post(n) => Param::Post(n),
            bt::Param::KeyReq(n) => Param::KeyReq(n),
            bt::Param::Key(n) => Param::Key(n),
            bt::Param::KeyRest(n) => Param::KeyRest(n),
            bt::Param::NoKey => Param::NoKey,
            bt::Param::Block(n) => Param::Block(n),
        }
    }
}

impl From<Param> for bt::Param {
    fn from(p: Param) -> Self {
        match p {
            Param::Req(n) => bt::Param::Req(n),
            Param::Opt(n) => bt::Param::Opt(n),
            Param::Rest(n) => bt::Param::Rest(n),
            Param::Post(n) => bt::Param::Post(n),
            Param::KeyReq(n) => bt::Param::KeyReq(n),
            Param::Key(n) => bt::Param::Key(n),
            Param::KeyRest(n) => bt::Param::KeyRest(n),
            Param::NoKey => bt::Param::NoKey,
            Param::Block(n) => bt::Param::Block(n),
        }
    }
}

impl From<bt::Params> for Params {
    fn from(p: bt::Params) -> Self {
        match p {
            bt::Params::Known(list) => Params::Known(list.into_iter().map(Into::into).collect()),
            bt::Params::Unknown => Params::Unknown,
        }
    }
}

impl From<Params> for bt::Params {
    fn from(p: Params) -> Self {
        match p {
            Params::Known(list) => bt::Params::Known(list.into_iter().map(Into::into).collect()),
            Params::Unknown => bt::Params::Unknown,
        }
    }
}

impl From<bt::Clause> for Clause {
    fn from(c: bt::Clause) -> Self {
        match c {
            bt::Clause::Rescue => Clause::Rescue,
            bt::Clause::Ensure => Clause::Ensure,
        }
    }
}

impl From<Clause> for bt::Clause {
    fn from(c: Clause) -> Self {
        match c {
            Clause::Rescue => bt::Clause::Rescue,
            Clause::Ensure => bt::Clause::Ensure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<bt::FrameFacts> {
        let s = |n: &str| Some(n.to_string());
        let kinds = [
            bt::MethodKind::Instance,
            bt::MethodKind::ClassLevel,
            bt::MethodKind::ObjectSingleton,
            bt::MethodKind::Refinement {
                refined_in: "Mod::Refines".into(),
            },
            bt::MethodKind::TopLevel,
        ];
        let clauses = [None, Some(bt::Clause::Rescue), Some(bt::Clause::Ensure)];
        let params = [
            bt::Params::Unknown,
            bt::Params::Known(vec![
                bt::Param::Req(s("a")),
                bt::Param::Req(None),
                bt::Param::Opt("b".into()),
                bt::Param::Rest(s("c")),
                bt::Param::Rest(None),
                bt::Param::Post(s("d")),
                bt::Param::KeyReq("e".into()),
                bt::Param::Key("f".into()),
                bt::Param::KeyRest(s("g")),
                bt::Param::NoKey,
                bt::Param::Block(s("h")),
                bt::Param::Block(None),
            ]),
        ];
        let mut out = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            for clause in clauses {
                for p in &params {
                    out.push(bt::FrameFacts {
                        class_path: format!("Billing::Invoice{i}"),
                        method_name: "total".into(),
                        kind: kind.clone(),
                        block_depth: i as u32,
                        clause,
                        params: p.clone(),
                    });
                }
            }
        }
        out
    }

    #[test]
    fn converting_there_and_back_keeps_everything() {
        for f in every_kind() {
            let wire = FrameFacts::from(f.clone());
            assert_eq!(wire.class_path, f.class_path);
            assert_eq!(wire.block_depth, f.block_depth);
            assert_eq!(bt::FrameFacts::from(wire), f);
        }
    }
}
