//! Where each frame of a stack is shown, and which frames a backtrace leaves out.
//!
//! Ruby shows a C function at the line of the Ruby code that called it. Some methods written
//! in Ruby are shown the same way: from 3.4, those marked `Primitive.attr! :c_trace` (the
//! `Array#each`, `#map`, `#select` and `Integer#downto` that YJIT defines in Ruby); from 4.0,
//! every method of Ruby's own `<internal:...>` files, and then only the outermost of a run of
//! such frames is kept (the frames it called that were waiting for a line are left out). Rescue and ensure clauses stand for
//! their frames as [`crate::hidden_by_clauses`] says. rbscope places frames the way the running
//! Ruby does, so its backtraces have the frames and lines of Ruby's own, whoever reads the
//! stack (the agent in the process, the CLI from outside or from a core file).

/// What the placement needs to know of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A C function.
    C,
    /// A frame running Ruby code.
    Ruby {
        /// It runs a rescue or ensure clause.
        clause: bool,
        /// The running Ruby shows it like a C function (see the module docs).
        like_c: bool,
    },
}

/// How the running Ruby's backtraces treat frames shown like C functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikeC {
    /// Ruby 3.1 to 3.3: no Ruby frame is shown like a C function.
    Never,
    /// Ruby 3.4: frames marked `c_trace` are shown at their caller's line.
    CTrace,
    /// Ruby 4.0 on: `<internal:...>` frames are shown at their caller's line, and each drops
    /// the frames it called that were still waiting for a line (C functions and other internal
    /// frames).
    Internal,
}

/// Where one frame is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Left out of the backtrace.
    Hidden,
    /// At its own code's path and line.
    Own,
    /// At the path and line of the frame with this index (the Ruby code that called it).
    At(usize),
    /// Nowhere: a C function with no Ruby code below it (a thread's first frame).
    Unknown,
}

/// Places `frames` (innermost first), as `vm_backtrace.c` of the running Ruby does.
pub fn place_frames(frames: &[Shape], like_c: LikeC) -> Vec<Place> {
    let mut out = vec![Place::Unknown; frames.len()];
    let mut waiting: Vec<usize> = Vec::new();
    let mut skip_next = false;
    for (i, shape) in frames.iter().enumerate() {
        let Shape::Ruby {
            clause,
            like_c: shown_like_c,
        } = *shape
        else {
            waiting.push(i);
            continue;
        };
        let hidden = skip_next;
        skip_next = clause;
        if hidden {
            out[i] = Place::Hidden;
            continue;
        }
        match (shown_like_c, like_c) {
            (true, LikeC::Internal) => {
                for w in waiting.drain(..) {
                    out[w] = Place::Hidden;
                }
                waiting.push(i);
            }
            (true, LikeC::CTrace) => waiting.push(i),
            _ => {
                out[i] = Place::Own;
                for w in waiting.drain(..) {
                    out[w] = Place::At(i);
                }
            }
        }
    }
    // Nothing called them from Ruby code: Ruby frames keep their own line (4.0 shows a stack
    // that starts in an internal file, such as the prelude, at that file).
    for w in waiting {
        if matches!(frames.get(w), Some(Shape::Ruby { .. })) {
            out[w] = Place::Own;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Shape = Shape::C;
    const RUBY: Shape = Shape::Ruby {
        clause: false,
        like_c: false,
    };
    const CLAUSE: Shape = Shape::Ruby {
        clause: true,
        like_c: false,
    };
    const INTERNAL: Shape = Shape::Ruby {
        clause: false,
        like_c: true,
    };

    #[test]
    fn c_functions_are_shown_at_their_callers_line() {
        assert_eq!(
            place_frames(&[C, C, RUBY, RUBY], LikeC::Never),
            [Place::At(2), Place::At(2), Place::Own, Place::Own]
        );
        // A thread's first frame in C has no caller.
        assert_eq!(
            place_frames(&[RUBY, C], LikeC::Never),
            [Place::Own, Place::Unknown]
        );
    }

    #[test]
    fn clauses_hide_the_frame_they_belong_to_and_c_frames_skip_it() {
        // Integer() in C, called from `rescue in m`, m, <main>
        assert_eq!(
            place_frames(&[C, CLAUSE, RUBY, RUBY], LikeC::Internal),
            [Place::At(1), Place::Own, Place::Hidden, Place::Own]
        );
    }

    #[test]
    fn before_3_4_ruby_frames_keep_their_own_line() {
        assert_eq!(
            place_frames(&[INTERNAL, RUBY, INTERNAL, RUBY], LikeC::Never),
            [Place::Own; 4]
        );
    }

    #[test]
    fn ruby_3_4_shows_c_trace_frames_like_c_functions() {
        // Queue#pop in C, a block, Array#each (c_trace), the method
        assert_eq!(
            place_frames(&[C, RUBY, INTERNAL, RUBY], LikeC::CTrace),
            [Place::At(1), Place::Own, Place::At(3), Place::Own]
        );
        // c_trace frames do not drop what they called
        assert_eq!(
            place_frames(&[C, INTERNAL, RUBY], LikeC::CTrace),
            [Place::At(2), Place::At(2), Place::Own]
        );
    }

    #[test]
    fn ruby_4_0_keeps_the_outermost_internal_frame_of_a_run() {
        // a C function called by Kernel#Integer (internal), called by Kernel#tap (internal)
        assert_eq!(
            place_frames(&[C, INTERNAL, INTERNAL, RUBY], LikeC::Internal),
            [Place::Hidden, Place::Hidden, Place::At(3), Place::Own]
        );
        // an internal frame called by a C function: both wait for the same line
        assert_eq!(
            place_frames(&[INTERNAL, C, RUBY], LikeC::Internal),
            [Place::At(2), Place::At(2), Place::Own]
        );
        // a block called by Array#each (internal) is Ruby code: nothing is dropped
        assert_eq!(
            place_frames(&[C, RUBY, INTERNAL, RUBY], LikeC::Internal),
            [Place::At(1), Place::Own, Place::At(3), Place::Own]
        );
        // a stack that starts in an internal file shows that file
        assert_eq!(
            place_frames(&[RUBY, INTERNAL], LikeC::Internal),
            [Place::Own, Place::Own]
        );
    }
}
