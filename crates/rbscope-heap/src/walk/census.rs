//! `rbscope heap count`: live objects by VM type and by class, counted page by page.
//!
//! Why here: the count walks the same pages as the dump (the same slot loop,
//! [`super::live_slots`]), and what is made of the counts (types most first, classes summed by
//! name and filtered by the names asked for) is plain logic.

use super::{live_slots, vm, Vm};
use rustc_hash::FxHashMap;

/// The counts of a walk.
#[derive(Debug, Default)]
pub struct Census {
    objects: u64,
    by_type: [u64; 32],
    by_class: FxHashMap<u64, u64>,
}

impl Census {
    /// Counts the live objects of one heap page; internal objects (IMEMOs, hidden objects)
    /// have no class to count.
    ///
    /// # Safety
    /// The contract of [`Vm`]: `start..end` is a page the VM's heap iteration handed out, with
    /// slots of `stride` bytes.
    pub unsafe fn count_page<V: Vm>(&mut self, vm: &V, start: u64, end: u64, stride: u64) {
        // SAFETY: the caller's contract.
        for (v, flags) in unsafe { live_slots(vm, start, end, stride) } {
            if let Some(n) = self.by_type.get_mut((flags & vm::T_MASK) as usize) {
                *n += 1;
            }
            self.objects += 1;
            // SAFETY: `v` is a live object of the page, per the caller.
            if !unsafe { vm.internal(v) } {
                // SAFETY: as above.
                *self.by_class.entry(unsafe { vm.class_of(v) }).or_default() += 1;
            }
        }
    }

    /// How many live objects were counted.
    pub fn objects(&self) -> u64 {
        self.objects
    }

    /// Objects by type name (`T_STRING`), most first, then by name.
    pub fn by_type(&self) -> Vec<(String, u64)> {
        let mut by_type: Vec<(String, u64)> = (0u32..)
            .zip(self.by_type)
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| (vm::type_name(t), n))
            .collect();
        by_type.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        by_type
    }

    /// Instances by class name, of the classes `names` asks for (all when empty), most first,
    /// then by name. `name_of` names a counted class (its real class's path; None to leave it
    /// out); classes of the same name are summed.
    pub fn classes(
        &self,
        names: &[String],
        mut name_of: impl FnMut(u64) -> Option<String>,
    ) -> Vec<(String, u64)> {
        let mut per_name: FxHashMap<String, u64> = FxHashMap::default();
        for (klass, n) in &self.by_class {
            let Some(name) = name_of(*klass) else {
                continue;
            };
            if wanted(&name, names) {
                *per_name.entry(name).or_default() += n;
            }
        }
        let mut classes: Vec<(String, u64)> = per_name.into_iter().collect();
        classes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        classes
    }
}

/// Whether class `name` is one of `names` or inside one of them (`Shop` asks for
/// `Shop::Order` too, not `Shopper`); every name when `names` is empty.
pub fn wanted(name: &str, names: &[String]) -> bool {
    names.is_empty()
        || names.iter().any(|w| {
            name == w
                || name
                    .strip_prefix(w.as_str())
                    .is_some_and(|rest| rest.starts_with("::"))
        })
}

#[cfg(test)]
mod tests {
    use super::super::fake::{dispatch, FakeVm, Obj};
    use super::super::vm::Release;
    use super::*;

    fn count<V: Vm>(vm: V, pages: &[(u64, u64)]) -> Census {
        let mut c = Census::default();
        for (start, end) in pages {
            // SAFETY: the fake VM answers for any address.
            unsafe { c.count_page(&vm, *start, *end, 40) };
        }
        c
    }

    fn sample() -> Census {
        let mut vm = FakeVm::new(Release::R3_3);
        let class = |t: u64, klass: u64| Obj {
            class: klass,
            ..Obj::with_type(t)
        };
        vm.add(0x1000, class(0x05, 0xa0));
        vm.add(0x1028, class(0x05, 0xa0));
        vm.add(0x1078, class(0x01, 0xb0));
        vm.add(0x2000, class(0x01, 0xc0));
        vm.add(0x2028, class(0x07, 0xa8));
        vm.add(
            0x2050,
            Obj {
                internal: true,
                ..class(0x1a, 0xdead)
            },
        );
        dispatch!(vm, count, &[(0x1000, 0x10a0), (0x2000, 0x2078)])
    }

    #[test]
    fn counts_by_type_most_first() {
        let c = sample();
        assert_eq!(c.objects(), 6);
        assert_eq!(
            c.by_type(),
            [
                ("T_OBJECT".to_string(), 2),
                ("T_STRING".to_string(), 2),
                ("T_ARRAY".to_string(), 1),
                ("T_IMEMO".to_string(), 1)
            ]
        );
    }

    fn names(klass: u64) -> Option<String> {
        match klass {
            0xa0 => Some("String".into()),
            0xa8 => Some("Array".into()),
            0xb0 => Some("Shop::Order".into()),
            // A singleton of Shop::Order: its real class has the same name.
            0xc0 => Some("Shop::Order".into()),
            _ => None,
        }
    }

    #[test]
    fn classes_are_summed_by_name_and_filtered() {
        let c = sample();
        assert_eq!(
            c.classes(&[], names),
            [
                ("Shop::Order".to_string(), 2),
                ("String".to_string(), 2),
                ("Array".to_string(), 1)
            ]
        );
        assert_eq!(
            c.classes(&["Shop".to_string()], names),
            [("Shop::Order".to_string(), 2)]
        );
        assert!(c.classes(&["Sho".to_string()], names).is_empty());
    }

    #[test]
    fn wanted_names_and_namespaces() {
        let asked = ["Shop".to_string(), "Array".to_string()];
        assert!(wanted("Shop", &asked));
        assert!(wanted("Shop::Order::Line", &asked));
        assert!(wanted("Array", &asked));
        assert!(!wanted("Shopper", &asked));
        assert!(!wanted("ShopX::Order", &asked));
        assert!(!wanted("String", &asked));
        assert!(wanted("Anything", &[]));
    }
}
