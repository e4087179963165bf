//! Decisions the raise capture makes that need no Ruby: which code is the app's, which
//! location belongs to which frame the debug inspector gives, whether the fast path's own walk
//! of the stack agrees with Ruby's, and whether a better backtrace agrees with the exception's
//! own. The agent reads the facts from the VM and asks here.

use crate::config::Config;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
