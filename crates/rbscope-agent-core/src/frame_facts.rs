//! How a frame is named in a better backtrace (`Shop#checkout`, `Shop.build`,
//! `Shop$singleton#x`, a refinement's method, `<main>`), decided from facts about its method's
//! class and its `self` that the agent reads from Ruby ([`Classes`]), and the names Ruby code
//! sees for those facts (`Rbscope::Frame#kind`, `#parameters`).

use rbscope_backtrace::{FrameFacts, MethodKind, Param, Params};

/// What the naming needs to know about classes, modules and objects (of type `V`).
pub trait Classes {
    type V: Copy + PartialEq;
    /// Whether `v` is a class or module.
    fn is_module(&self, v: Self::V) -> bool;
    /// A class or module's readable path (`Shop`, `#<Class:Shop>`).
    fn path(&self, module: Self::V) -> String;
    /// The path of an object's class.
    fn class_name_of(&self, v: Self::V) -> String;
    /// For a refinement module, the class it refines and the module that defined it.
    fn refinement(&self, module: Self::V) -> Option<(Self::V, Self::V)>;
    /// Whether class `a` is a subclass of class `b`.
    fn is_subclass(&self, a: Self::V, b: Self::V) -> bool;
    fn singleton_class(&self, v: Self::V) -> Option<Self::V>;
    /// `owner.instance_method(name).parameters`.
    fn parameters(&self, owner: Self::V, name: &str) -> Option<Vec<Param>>;
}

/// Facts for a frame from its iseq's label and base label, its method's class (None outside
/// methods; for a singleton method, the object the singleton class belongs to) and its `self`.
pub fn facts<C: Classes>(
    c: &C,
    label: &str,
    base_label: &str,
    klass: Option<C::V>,
    self_v: C::V,
) -> FrameFacts {
    let (block_depth, clause) = rbscope_backtrace::nesting_of_label(label);
    let known = |class_path, kind, params| FrameFacts {
        class_path,
        method_name: base_label.to_string(),
        kind,
        block_depth,
        clause,
        params,
    };
    // Code outside any method: `<main>`, `<top (required)>`, `<class:Foo>`.
    let Some(klass) = klass.filter(|_| !base_label.starts_with('<')) else {
        let class_body = base_label.starts_with("<class:") || base_label.starts_with("<module:");
        let (class_path, kind) = if c.is_module(self_v) && class_body {
            (c.path(self_v), MethodKind::ClassLevel)
        } else {
            (c.class_name_of(self_v), MethodKind::TopLevel)
        };
        return known(class_path, kind, Params::Known(Vec::new()));
    };
    let (class_path, kind, method_owner) = if let Some((refined, defined_at)) = c.refinement(klass)
    {
        // A method of `refine String do ... end` inside `module Ext`.
        let refined_in = c.path(defined_at);
        (
            c.path(refined),
            MethodKind::Refinement { refined_in },
            Some(klass),
        )
    } else if !c.is_module(klass) {
        // A method defined on one specific object: the inspector gives the object.
        (
            c.class_name_of(klass),
            MethodKind::ObjectSingleton,
            c.singleton_class(klass),
        )
    } else if c.is_module(self_v) && (self_v == klass || c.is_subclass(self_v, klass)) {
        (
            c.path(klass),
            MethodKind::ClassLevel,
            c.singleton_class(klass),
        )
    } else {
        (c.path(klass), MethodKind::Instance, Some(klass))
    };
    let params = method_owner
        .and_then(|owner| c.parameters(owner, base_label))
        .map(Params::Known)
        .unwrap_or(Params::Unknown);
    known(class_path, kind, params)
}

/// `Rbscope::Frame#kind`'s name for a method kind.
pub fn kind_name(kind: &MethodKind) -> &'static str {
    match kind {
        MethodKind::Instance => "instance",
        MethodKind::ClassLevel => "class",
        MethodKind::ObjectSingleton => "singleton",
        MethodKind::Refinement { .. } => "refinement",
        MethodKind::TopLevel => "top",
    }
}

/// A parameter as `Method#parameters` gives it: its kind and its name (None when it has none).
pub fn param_parts(p: &Param) -> (&'static str, Option<&str>) {
    let (kind, name) = match p {
        Param::Req(n) => ("req", n.as_deref()),
        Param::Opt(n) => ("opt", Some(n.as_str())),
        Param::Rest(n) => ("rest", n.as_deref()),
        Param::Post(n) => ("post", n.as_deref()),
        Param::KeyReq(n) => ("keyreq", Some(n.as_str())),
        Param::Key(n) => ("key", Some(n.as_str())),
        Param::KeyRest(n) => ("keyrest", n.as_deref()),
        Param::NoKey => ("nokey", None),
        Param::Block(n) => ("block", n.as_deref()),
    };
    (kind, name.filter(|n| !n.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny class world: ids name classes, modules and objects.
    struct World;

    const OBJECT: u32 = 1;
    const SHOP: u32 = 2; // class Shop < Object
    const SHOP_SUB: u32 = 3; // class Special < Shop
    const EXT: u32 = 4; // module Ext (defines a refinement of String)
    const REFINEMENT: u32 = 5;
    const STRING: u32 = 6;
    const AN_OBJECT: u32 = 10; // an instance of Shop
    const SHOP_META: u32 = 11; // Shop's singleton class

    impl Classes for World {
        type V = u32;
        fn is_module(&self, v: u32) -> bool {
            v < 10
        }
        fn path(&self, m: u32) -> String {
            match m {
                OBJECT => "Object",
                SHOP => "Shop",
                SHOP_SUB => "Special",
                EXT => "Ext",
                REFINEMENT => "#<refinement:String@Ext>",
                STRING => "String",
                _ => "?",
            }
            .into()
        }
        fn class_name_of(&self, v: u32) -> String {
            if v == AN_OBJECT {
                "Shop".into()
            } else {
                "Class".into()
            }
        }
        fn refinement(&self, m: u32) -> Option<(u32, u32)> {
            (m == REFINEMENT).then_some((STRING, EXT))
        }
        fn is_subclass(&self, a: u32, b: u32) -> bool {
            a == SHOP_SUB && b == SHOP
        }
        fn singleton_class(&self, v: u32) -> Option<u32> {
            (v == SHOP || v == AN_OBJECT).then_some(SHOP_META)
        }
        fn parameters(&self, owner: u32, name: &str) -> Option<Vec<Param>> {
            match (owner, name) {
                (SHOP, "checkout") => Some(vec![Param::Req(Some("cart".into()))]),
                (SHOP_META, "build") => Some(vec![Param::Opt("n".into())]),
                _ => None,
            }
        }
    }

    fn line(f: &FrameFacts) -> String {
        rbscope_backtrace::format_line("a.rb", 1, f)
    }

    #[test]
    fn instance_class_level_singleton_refinement_and_top_level() {
        let w = World;
        let f = facts(&w, "checkout", "checkout", Some(SHOP), AN_OBJECT);
        assert_eq!(f.kind, MethodKind::Instance);
        assert_eq!(
            f.params,
            Params::Known(vec![Param::Req(Some("cart".into()))])
        );
        let f = facts(&w, "build", "build", Some(SHOP), SHOP);
        assert_eq!(
            (f.kind.clone(), f.class_path.as_str()),
            (MethodKind::ClassLevel, "Shop")
        );
        assert_eq!(f.params, Params::Known(vec![Param::Opt("n".into())]));
        let f = facts(&w, "build", "build", Some(SHOP), SHOP_SUB);
        assert_eq!(f.kind, MethodKind::ClassLevel, "called on a subclass");
        let f = facts(&w, "x", "x", Some(AN_OBJECT), AN_OBJECT);
        assert_eq!(
            (f.kind.clone(), f.class_path.as_str()),
            (MethodKind::ObjectSingleton, "Shop")
        );
        let f = facts(&w, "shout", "shout", Some(REFINEMENT), STRING);
        assert_eq!(
            (f.kind.clone(), f.class_path.as_str()),
            (
                MethodKind::Refinement {
                    refined_in: "Ext".into()
                },
                "String"
            )
        );
        assert_eq!(f.params, Params::Unknown, "unknown parameters stay unknown");
        let f = facts(&w, "<main>", "<main>", None, AN_OBJECT);
        assert_eq!(
            (f.kind.clone(), f.class_path.as_str()),
            (MethodKind::TopLevel, "Shop")
        );
        let f = facts(&w, "<class:Shop>", "<class:Shop>", Some(SHOP), SHOP);
        assert_eq!(
            (f.kind.clone(), f.class_path.as_str()),
            (MethodKind::ClassLevel, "Shop")
        );
        assert_eq!(f.params, Params::Known(vec![]));
    }

    #[test]
    fn blocks_and_clauses_come_from_the_label() {
        let f = facts(
            &World,
            "rescue in block (2 levels) in checkout",
            "checkout",
            Some(SHOP),
            AN_OBJECT,
        );
        assert_eq!(f.block_depth, 2);
        assert!(f.clause.is_some());
        assert!(line(&f).contains("Shop#checkout"), "{}", line(&f));
    }

    #[test]
    fn names_ruby_sees() {
        assert_eq!(kind_name(&MethodKind::ObjectSingleton), "singleton");
        assert_eq!(param_parts(&Param::Opt("n".into())), ("opt", Some("n")));
        assert_eq!(param_parts(&Param::Rest(None)), ("rest", None));
        assert_eq!(param_parts(&Param::Req(Some(String::new()))), ("req", None));
        assert_eq!(param_parts(&Param::NoKey), ("nokey", None));
    }
}
