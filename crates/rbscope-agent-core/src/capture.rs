//! Decisions the raise capture makes that need no Ruby: which code is the app's, which
//! location belongs to which frame the debug inspector gives, whether the fast path's own walk
//! of the stack agrees with Ruby's, and whether a better backtrace agrees with the exception's
//! own. The agent reads the facts from the VM and asks here. Also the bounded bookkeeping
//! its readers share: the first items of a collection, the frame cap, a cache that starts
//! over when full.

use crate::config::Config;
use rbscope_snapshot::walk::Limits;
use rbscope_snapshot::ObjectKind;
use std::collections::HashMap;
use std::hash::Hash;

/// The object walk's limits, as configured.
pub fn walk_limits(cfg: &Config) -> Limits {
    Limits {
        max_depth: cfg.max_depth,
        max_objects: cfg.max_objects,
        max_bytes: cfg.max_bytes,
        max_string_bytes: cfg.max_string_bytes,
        max_collection_items: cfg.max_collection_items,
    }
}

/// A class whose objects the walk reads through one of the class's own methods answering a
/// String (their value is C data on Ruby 3.1), called as `Class.instance_method(method)
/// .bind_call(obj, *args)` so that an app's subclass cannot intercept it.
pub struct TextReader {
    pub class: &'static str,
    pub method: &'static str,
    /// An Integer argument (the fraction digits of `DateTime#iso8601`).
    pub digits: Option<u64>,
    pub kind: fn(String) -> ObjectKind,
}

/// The text readers, most specific class first: an object is read by the first class it is a
/// kind of (a DateTime is also a Date), else shown as opaque.
pub const TEXT_READERS: [TextReader; 4] = [
    TextReader {
        class: "DateTime",
        method: "iso8601",
        digits: Some(9),
        kind: |iso8601| ObjectKind::DateTime { iso8601 },
    },
    TextReader {
        class: "Date",
        method: "iso8601",
        digits: None,
        kind: |iso8601| ObjectKind::Date { iso8601 },
    },
    TextReader {
        class: "BigDecimal",
        method: "to_s",
        digits: None,
        kind: |digits| ObjectKind::BigDecimal { digits },
    },
    TextReader {
        class: "Thread",
        method: "inspect",
        digits: None,
        kind: |preview| ObjectKind::Opaque { preview },
    },
];

/// One pending capture: an exception (0 when the slot is empty) and its frames, in the
/// raise-record format (`rbscope_vm::raise_record`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub exc: u64,
    pub words: Vec<usize>,
}

/// The pending captures: a fixed number of slots, overwritten oldest first, so memory stays
/// bounded and a raise allocates nothing once the slots have grown to the stacks' sizes.
///
/// The slots' exceptions are also kept side by side in `excs`: every raise asks whether its
/// exception is already kept (a re-raise), and that answer is nearly always no, so the whole
/// list is compared in chunks the compiler turns into vector compares.
#[derive(Default)]
pub struct Ring {
    slots: Vec<Slot>,
    excs: Vec<u64>,
    next: usize,
}

/// Exceptions compared at once by [`Ring::find`].
const CHUNK: usize = 8;

impl Ring {
    /// No slots (nothing is kept until [`Ring::new`] sizes it).
    pub const EMPTY: Ring = Ring {
        slots: Vec::new(),
        excs: Vec::new(),
        next: 0,
    };

    /// A ring of `size` empty slots (at least one).
    pub fn new(size: usize) -> Ring {
        Ring {
            slots: vec![Slot::default(); size.max(1)],
            excs: vec![0; size.max(1)],
            next: 0,
        }
    }

    /// Runs `fill` on the oldest slot (emptied first); when `fill` answers false the slot is
    /// left empty. Answers what `fill` did (false with no slots).
    pub fn fill_next(&mut self, fill: impl FnOnce(&mut Slot) -> bool) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let i = self.next % self.slots.len();
        self.next = self.next.wrapping_add(1);
        let (Some(slot), Some(exc)) = (self.slots.get_mut(i), self.excs.get_mut(i)) else {
            return false;
        };
        slot.exc = 0;
        *exc = 0;
        slot.words.clear();
        if fill(slot) {
            *exc = slot.exc;
            return true;
        }
        slot.exc = 0;
        slot.words.clear();
        false
    }

    /// `exc`'s pending capture.
    #[inline]
    pub fn find(&self, exc: u64) -> Option<&Slot> {
        if exc == 0 {
            return None;
        }
        let mut chunks = self.excs.chunks_exact(CHUNK);
        let mut base = 0;
        for chunk in &mut chunks {
            // No early exit inside a chunk: eight compares and an or, vectorized.
            if chunk.iter().fold(false, |hit, e| hit | (*e == exc)) {
                break;
            }
            base += CHUNK;
        }
        let at = self.excs.get(base..)?.iter().position(|e| *e == exc)?;
        self.slots.get(base + at)
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Each slot's exception and its record, to update records in place.
    pub fn records_mut(&mut self) -> impl Iterator<Item = (u64, &mut Vec<usize>)> {
        self.slots.iter_mut().map(|s| (s.exc, &mut s.words))
    }
}

/// The first `limit` items offered (a hash's pairs, a set's members...) and how many were
/// offered in all.
pub struct FirstN<T> {
    pub items: Vec<T>,
    pub total: usize,
    limit: usize,
}

impl<T> FirstN<T> {
    pub fn new(limit: usize) -> Self {
        FirstN {
            items: Vec::new(),
            total: 0,
            limit,
        }
    }

    /// Counts `item`, and keeps it while fewer than `limit` are kept.
    pub fn offer(&mut self, item: T) {
        self.total += 1;
        if self.items.len() < self.limit {
            self.items.push(item);
        }
    }
}

/// The cap on app frames kept per capture: frames over it are counted as skipped.
pub struct FrameCap {
    pub kept: usize,
    pub skipped: usize,
    max: usize,
}

impl FrameCap {
    pub fn new(max: usize) -> Self {
        FrameCap {
            kept: 0,
            skipped: 0,
            max,
        }
    }

    /// Whether one more app frame is kept (else it is counted as skipped).
    pub fn admit(&mut self) -> bool {
        if self.kept >= self.max {
            self.skipped += 1;
            return false;
        }
        self.kept += 1;
        true
    }
}

/// A cache of at most `max` entries that starts over (forgets everything) when full: simple,
/// bounded, and right for keys that repeat (the methods of a few hot stacks).
pub struct Memo<K, V> {
    map: HashMap<K, V>,
    max: usize,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub fn new(max: usize) -> Self {
        Memo {
            map: HashMap::new(),
            max,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).cloned()
    }

    /// Keeps `value` under `key`, first forgetting everything if the cache is full.
    pub fn insert(&mut self, key: K, value: V) {
        if self.map.len() >= self.max {
            self.map.clear();
        }
        self.map.insert(key, value);
    }

    /// The keys kept now (what a GC mark function must keep alive).
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }
}

/// App code is everything outside the library prefixes (gems, the standard library) and
/// outside Ruby's `<internal:...>` files, unless library frames were asked for.
pub fn is_app_path(cfg: &Config, path: &[u8]) -> bool {
    if path.starts_with(b"<internal:") {
        return false;
    }
    if cfg.capture_library_frames {
        return true;
    }
    !cfg.library_prefixes
        .iter()
        .any(|p| !p.is_empty() && path.starts_with(p.as_bytes()))
}

/// Which of `n` backtrace locations each frame the debug inspector lists has, given which
/// frames a rescue or ensure clause hides (`hidden`, one per frame): one each when there are
/// as many frames as locations (Ruby 3.1 to 3.3, 4.0), none for the hidden frames when the
/// others are as many as the locations (Ruby 3.4 leaves those out). None otherwise: the caller
/// then uses the frames as the inspector's API gives them, one location each.
pub fn locations_by_frame(hidden: &[bool], n: usize) -> Option<Vec<Option<usize>>> {
    if hidden.len() == n {
        return Some((0..n).map(Some).collect());
    }
    if hidden.iter().filter(|h| !**h).count() != n {
        return None;
    }
    let mut next = 0;
    Some(
        hidden
            .iter()
            .map(|h| {
                (!*h).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect(),
    )
}

/// One frame as the debug inspector knows it (VALUEs as words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    /// nil for a C function's frame.
    pub binding: u64,
    pub self_value: u64,
    pub klass: u64,
    /// The frame's iseq (0 when unknown), and its control frame (0 when unknown).
    pub iseq: u64,
    pub cfp: usize,
}

impl Inspected {
    /// A frame of the inspector's own list from its entry `[self, class, binding, iseq, cfp]`
    /// (`cfp` tagged as a Fixnum-looking word: its low bits are cleared); None when the entry
    /// is shorter.
    pub fn from_entry(entry: &[u64], nil: u64) -> Option<Inspected> {
        let iseq = *entry.get(3)?;
        Some(Inspected {
            self_value: *entry.first()?,
            klass: *entry.get(1)?,
            binding: *entry.get(2)?,
            iseq: if iseq == nil { 0 } else { iseq },
            cfp: (*entry.get(4)? as usize) & !0x03,
        })
    }
}

/// The debug inspector's own list of frames, from the places it may be kept (`candidates`:
/// each the entries of a list, or None when it is not a list of lists): the first whose every
/// entry is a frame, whose first frame is `first` (the one the inspector's API gives for index
/// 0: same binding and self), and that has at least `n` frames.
pub fn own_frames(
    candidates: impl IntoIterator<Item = Option<Vec<Vec<u64>>>>,
    first: &Inspected,
    n: usize,
    nil: u64,
) -> Option<Vec<Inspected>> {
    candidates.into_iter().flatten().find_map(|entries| {
        let frames: Vec<Inspected> = entries
            .iter()
            .map(|e| Inspected::from_entry(e, nil))
            .collect::<Option<_>>()?;
        let first_agrees = frames
            .first()
            .is_some_and(|f| f.binding == first.binding && f.self_value == first.self_value);
        (first_agrees && frames.len() >= n).then_some(frames)
    })
}

/// The fast path's self-test: our walk of the current stack (path and line of each Ruby frame,
/// innermost first) against `rb_profile_frames`' (its Ruby frames): the same, or the VM layout
/// is not trusted (the error says where they differ).
///
/// Code run by `rb_eval_string` from C (how `rbscope inject` starts the agent) has the path
/// "eval" in its iseq, while rb_profile_frames names the file of the code it interrupted: the
/// check covers the frames above it, which are the agent's own Ruby.
pub fn walks_agree(ours: &[(String, i64)], theirs: &[(String, i64)]) -> Result<(), String> {
    let k = ours.len().min(theirs.len()).min(
        ours.iter()
            .position(|(p, _)| p == "eval")
            .unwrap_or(usize::MAX),
    );
    if k == 0 || ours.get(..k) != theirs.get(..k) {
        return Err(format!(
            "walk {:?} vs profile {:?}",
            ours.first(),
            theirs.first()
        ));
    }
    Ok(())
}

/// Lines and paths of a backtrace's frames, read when asked (each read may call Ruby).
pub trait Frames {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn line(&mut self, i: usize) -> Option<i64>;
    fn path(&mut self, i: usize) -> Option<String>;
}

/// [`Frames`] that are a list of items, each read with `line` and `path` when asked.
pub struct ListFrames<'a, T, L, P> {
    pub items: &'a [T],
    pub line: L,
    pub path: P,
}

impl<T, L, P> Frames for ListFrames<'_, T, L, P>
where
    L: FnMut(&T) -> Option<i64>,
    P: FnMut(&T) -> Option<String>,
{
    fn len(&self) -> usize {
        self.items.len()
    }
    fn line(&mut self, i: usize) -> Option<i64> {
        (self.line)(self.items.get(i)?)
    }
    fn path(&mut self, i: usize) -> Option<String> {
        (self.path)(self.items.get(i)?)
    }
}

/// Whether a better backtrace (`ours`) is the exception's own backtrace (`locations`, whose
/// labels are `labels`): as many frames, each at the same line, the innermost and outermost in
/// the same file. Before 3.4, Ruby's locations also hold the frames that rescue and ensure
/// clauses stand for (the one after each `rescue in`/`ensure in` location), which ours leave
/// out: those are not compared. Stops reading at the first difference.
pub fn backtraces_agree(
    ours: &mut impl Frames,
    locations: &mut impl Frames,
    labels: &[String],
) -> bool {
    let hidden = rbscope_backtrace::hidden_by_clauses(
        labels
            .iter()
            .map(|l| Some(l.starts_with("rescue in ") || l.starts_with("ensure in "))),
    );
    let theirs: Vec<usize> = hidden
        .iter()
        .enumerate()
        .filter_map(|(i, hidden)| (!hidden).then_some(i))
        .collect();
    if theirs.len() != ours.len() {
        return false;
    }
    let last = theirs.len().saturating_sub(1);
    for (i, at) in theirs.into_iter().enumerate() {
        if locations.line(at) != ours.line(i) {
            return false;
        }
        if (i == 0 || i == last) && locations.path(at) != ours.path(i) {
            return false;
        }
    }
    true
}

/// The modules an object was extended with, from its singleton class's ancestors: those
/// before its class, the singleton class itself left out (the most recent first).
pub fn extended_modules<T: PartialEq + Copy>(ancestors: &[T], singleton: T, class: T) -> Vec<T> {
    ancestors
        .iter()
        .copied()
        .take_while(|m| *m != class)
        .filter(|m| *m != singleton)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_readers_try_a_subclass_before_its_parent() {
        let at = |c: &str| TEXT_READERS.iter().position(|r| r.class == c).unwrap();
        assert!(at("DateTime") < at("Date"));
        let dt = &TEXT_READERS[at("DateTime")];
        assert_eq!((dt.method, dt.digits), ("iso8601", Some(9)));
        assert!(
            matches!((dt.kind)("x".into()), ObjectKind::DateTime { iso8601 } if iso8601 == "x")
        );
        let bd = &TEXT_READERS[at("BigDecimal")];
        assert!(
            matches!((bd.kind)("1.5".into()), ObjectKind::BigDecimal { digits } if digits == "1.5")
        );
        let th = &TEXT_READERS[at("Thread")];
        assert!(matches!(
            (th.kind)("#<Thread>".into()),
            ObjectKind::Opaque { .. }
        ));
        assert_eq!(TEXT_READERS[at("Date")].digits, None);
    }

    #[test]
    fn list_frames_read_their_items_when_asked() {
        let items = [(10, "a.rb"), (20, "b.rb")];
        let mut reads = 0;
        let mut f = ListFrames {
            items: &items,
            line: |it: &(i64, &str)| {
                reads += 1;
                Some(it.0)
            },
            path: |it: &(i64, &str)| Some(it.1.to_string()),
        };
        assert_eq!(f.len(), 2);
        assert_eq!((f.line(1), f.line(2)), (Some(20), None));
        assert_eq!(f.path(0).as_deref(), Some("a.rb"));
        assert_eq!(reads, 1);
    }

    #[test]
    fn the_inspector_list_is_the_first_that_agrees_with_its_api() {
        const NIL: u64 = 8;
        let first = Inspected {
            binding: 100,
            self_value: 101,
            klass: 0,
            iseq: 0,
            cfp: 0,
        };
        let good = vec![
            vec![101, 102, 100, 103, 0x1003],
            vec![201, 202, NIL, NIL, 0x2001],
        ];
        let frames = own_frames([None, Some(good.clone())], &first, 2, NIL).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[0].klass, frames[0].iseq, frames[0].cfp),
            (102, 103, 0x1000)
        );
        assert_eq!(
            (frames[1].binding, frames[1].iseq, frames[1].cfp),
            (NIL, 0, 0x2000)
        );
        // Too few frames, a short entry, or another first frame: not the list.
        assert_eq!(own_frames([Some(good.clone())], &first, 3, NIL), None);
        let short = vec![vec![101, 102, 100, 103]];
        assert_eq!(own_frames([Some(short)], &first, 1, NIL), None);
        let other = vec![vec![999, 102, 100, 103, 0]];
        let found = own_frames([Some(other), Some(good)], &first, 1, NIL).unwrap();
        assert_eq!(found[0].self_value, 101);
    }

    #[test]
    fn the_ring_overwrites_its_oldest_capture() {
        let mut ring = Ring::new(2);
        for exc in [1, 2, 3] {
            assert!(ring.fill_next(|s| {
                s.exc = exc;
                s.words.push(exc as usize * 10);
                true
            }));
        }
        assert_eq!(ring.find(1), None);
        assert_eq!(ring.find(3).map(|s| s.words.clone()), Some(vec![30]));
        assert_eq!(ring.find(2).map(|s| s.exc), Some(2));
        assert_eq!(ring.find(0), None);
        // A failed fill leaves its slot (the oldest: 2's) empty.
        assert!(!ring.fill_next(|s| {
            s.exc = 4;
            s.words.push(1);
            false
        }));
        assert_eq!((ring.find(2), ring.find(4)), (None, None));
        assert!(ring
            .slots()
            .iter()
            .any(|s| s.exc == 0 && s.words.is_empty()));
        assert_eq!(Ring::new(0).slots().len(), 1);
        assert!(!Ring::default().fill_next(|_| true));
    }

    #[test]
    fn every_slot_is_found_in_whole_chunks_and_in_the_rest() {
        // 21 slots: two whole chunks of eight and a rest of five; 30 fills wrap around.
        let mut ring = Ring::new(21);
        for exc in 1..=30u64 {
            assert!(ring.fill_next(|s| {
                s.exc = exc * 16;
                s.words.push(exc as usize);
                true
            }));
        }
        for exc in 1..=30u64 {
            let found = ring.find(exc * 16).map(|s| s.words.clone());
            let kept = exc > 9;
            assert_eq!(found, kept.then(|| vec![exc as usize]), "exception {exc}");
        }
        assert_eq!(ring.find(17), None);
    }

    #[test]
    fn first_n_keeps_the_first_items_and_counts_all() {
        let mut f = FirstN::new(2);
        for i in 0..5 {
            f.offer(i);
        }
        assert_eq!((f.items, f.total), (vec![0, 1], 5));
        let mut none = FirstN::new(0);
        none.offer('a');
        assert_eq!((none.items.len(), none.total), (0, 1));
    }

    #[test]
    fn frame_cap_counts_what_goes_over() {
        let mut cap = FrameCap::new(2);
        let admitted: Vec<bool> = (0..4).map(|_| cap.admit()).collect();
        assert_eq!(admitted, vec![true, true, false, false]);
        assert_eq!((cap.kept, cap.skipped), (2, 2));
    }

    #[test]
    fn memo_starts_over_when_full() {
        let mut m = Memo::new(2);
        m.insert(1, "a");
        m.insert(2, "b");
        assert_eq!((m.get(&1), m.get(&2)), (Some("a"), Some("b")));
        m.insert(3, "c");
        assert_eq!((m.get(&1), m.get(&3)), (None, Some("c")));
        assert_eq!(m.keys().count(), 1);
    }

    #[test]
    fn walk_limits_are_the_configured_ones() {
        let cfg = Config {
            max_depth: 3,
            max_collection_items: 7,
            ..Config::default()
        };
        let l = walk_limits(&cfg);
        assert_eq!((l.max_depth, l.max_collection_items), (3, 7));
        assert_eq!(l.max_objects, cfg.max_objects);
        assert_eq!(l.max_bytes, cfg.max_bytes);
        assert_eq!(l.max_string_bytes, cfg.max_string_bytes);
    }

    #[test]
    fn app_paths() {
        let cfg = Config {
            library_prefixes: vec!["/gems/".into(), String::new()],
            ..Config::default()
        };
        assert!(is_app_path(&cfg, b"/app/models/user.rb"));
        assert!(!is_app_path(&cfg, b"/gems/rack/lib/rack.rb"));
        assert!(!is_app_path(&cfg, b"<internal:kernel>"));
        let all = Config {
            capture_library_frames: true,
            ..cfg
        };
        assert!(is_app_path(&all, b"/gems/rack/lib/rack.rb"));
        assert!(!is_app_path(&all, b"<internal:kernel>"));
    }

    #[test]
    fn locations_one_each_or_none_for_hidden_frames() {
        assert_eq!(
            locations_by_frame(&[false, true, false], 3),
            Some(vec![Some(0), Some(1), Some(2)])
        );
        assert_eq!(
            locations_by_frame(&[false, true, false, false], 3),
            Some(vec![Some(0), None, Some(1), Some(2)])
        );
        assert_eq!(locations_by_frame(&[false, true, false], 1), None);
        assert_eq!(locations_by_frame(&[], 0), Some(vec![]));
    }

    fn frames(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(p, l)| (p.to_string(), *l)).collect()
    }

    #[test]
    fn the_self_test_compares_frames_above_eval() {
        let ours = frames(&[("/a.rb", 3), ("/b.rb", 9)]);
        assert_eq!(walks_agree(&ours, &ours), Ok(()));
        // rb_profile_frames may see fewer frames: the common ones are compared.
        assert_eq!(walks_agree(&ours, &ours[..1]), Ok(()));
        let wrong = frames(&[("/a.rb", 4), ("/b.rb", 9)]);
        let err = walks_agree(&ours, &wrong).unwrap_err();
        assert!(
            err.contains("(\"/a.rb\", 3)") && err.contains("(\"/a.rb\", 4)"),
            "{err}"
        );
        assert!(
            walks_agree(&ours, &[]).is_err(),
            "nothing compared is no agreement"
        );
        let injected = frames(&[("/a.rb", 3), ("eval", 1)]);
        let interrupted = frames(&[("/a.rb", 3), ("/app.rb", 50)]);
        assert_eq!(walks_agree(&injected, &interrupted), Ok(()));
        assert!(walks_agree(&frames(&[("eval", 1)]), &interrupted).is_err());
    }

    /// Frames whose every read is counted.
    struct Fake {
        frames: Vec<(i64, &'static str)>,
        reads: usize,
    }

    impl Fake {
        fn new(frames: &[(i64, &'static str)]) -> Fake {
            Fake {
                frames: frames.to_vec(),
                reads: 0,
            }
        }
    }

    impl Frames for Fake {
        fn len(&self) -> usize {
            self.frames.len()
        }
        fn line(&mut self, i: usize) -> Option<i64> {
            self.reads += 1;
            self.frames.get(i).map(|f| f.0)
        }
        fn path(&mut self, i: usize) -> Option<String> {
            self.reads += 1;
            self.frames.get(i).map(|f| f.1.to_string())
        }
    }

    fn labels(list: &[&str]) -> Vec<String> {
        list.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn better_backtraces_agree_with_the_exceptions_own() {
        let ours = || Fake::new(&[(3, "/a.rb"), (7, "/x.rb"), (9, "/b.rb")]);
        let three = labels(&["m", "n", "<main>"]);
        let mut locs = Fake::new(&[(3, "/a.rb"), (7, "/y.rb"), (9, "/b.rb")]);
        assert!(
            backtraces_agree(&mut ours(), &mut locs, &three),
            "middle paths differ"
        );
        assert_eq!(locs.reads, 5, "three lines, two paths");
        let mut other_line = Fake::new(&[(3, "/a.rb"), (8, "/y.rb"), (9, "/b.rb")]);
        assert!(!backtraces_agree(&mut ours(), &mut other_line, &three));
        assert_eq!(other_line.reads, 3, "stops at the first difference");
        let mut other_file = Fake::new(&[(3, "/a.rb"), (7, "/y.rb"), (9, "/c.rb")]);
        assert!(!backtraces_agree(&mut ours(), &mut other_file, &three));
        let mut two = Fake::new(&[(3, "/a.rb"), (9, "/b.rb")]);
        assert!(!backtraces_agree(
            &mut ours(),
            &mut two,
            &labels(&["m", "<main>"])
        ));
        assert_eq!(two.reads, 0, "a different count reads nothing");
        // Before 3.4: `rescue in m` is followed by the frame of `m` itself, which ours hide.
        let mut with_clause = Fake::new(&[(3, "/a.rb"), (2, "/a.rb"), (7, "/y.rb"), (9, "/b.rb")]);
        let clause_labels = labels(&["rescue in m", "m", "n", "<main>"]);
        assert!(backtraces_agree(
            &mut ours(),
            &mut with_clause,
            &clause_labels
        ));
    }

    #[test]
    fn extended_modules_are_those_before_the_class() {
        // #<Class:obj>, B (extended last), A, Klass, Object, Kernel.
        let ancestors = [9, 2, 1, 5, 6, 7];
        assert_eq!(super::extended_modules(&ancestors, 9, 5), [2, 1]);
        // A prepended module comes before the singleton class: it is kept too.
        assert_eq!(super::extended_modules(&[3, 9, 5, 6], 9, 5), [3]);
        assert!(super::extended_modules(&[9, 5, 6], 9, 5).is_empty());
    }
}
