//! Rebuilding each thread's calls from the event stream.
//!
//! The agent keeps a shadow stack per thread and only reports a return for a call it reported,
//! so the stream is balanced per thread; events lost in between (a slow client) can still break
//! a pair, so a return is matched against the innermost open call of the same method and the
//! calls above it are closed as unfinished. Nesting is always per thread: two threads' calls
//! never nest into each other.

use crate::events::{DecodeError, Event, GcPhase, Reader};
use std::collections::HashMap;

/// A table keyed by the agent's small, dense ids (methods and threads are numbered from 0 or
/// 1 up), kept in a vector; an id far out of that range (a corrupt stream) goes to a map, so
/// it cannot make the vector huge.
pub struct Dense<T> {
    near: Vec<Option<T>>,
    far: HashMap<u32, T>,
}

impl<T> Default for Dense<T> {
    fn default() -> Self {
        Dense {
            near: Vec::new(),
            far: HashMap::new(),
        }
    }
}

const NEAR: u32 = 1 << 20;

impl<T> Dense<T> {
    pub fn get(&self, id: u32) -> Option<&T> {
        if id < NEAR {
            self.near.get(id as usize).and_then(|v| v.as_ref())
        } else {
            self.far.get(&id)
        }
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        if id < NEAR {
            self.near.get_mut(id as usize).and_then(|v| v.as_mut())
        } else {
            self.far.get_mut(&id)
        }
    }

    /// The entry for `id`, made with `make` if absent.
    pub fn entry(&mut self, id: u32, make: impl FnOnce() -> T) -> &mut T {
        if id < NEAR {
            let i = id as usize;
            if self.near.len() <= i {
                self.near.resize_with(i + 1, || None);
            }
            self.near[i].get_or_insert_with(make)
        } else {
            self.far.entry(id).or_insert_with(make)
        }
    }

    pub fn take(&mut self, id: u32) -> Option<T> {
        if id < NEAR {
            self.near.get_mut(id as usize).and_then(|v| v.take())
        } else {
            self.far.remove(&id)
        }
    }

    /// Ids present, in order.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .near
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| i as u32)
            .collect();
        let mut far: Vec<u32> = self.far.keys().copied().collect();
        far.sort_unstable();
        ids.extend(far);
        ids
    }
}

/// Names sent by the agent: method and thread ids.
#[derive(Default)]
pub struct Names {
    methods: Dense<String>,
    threads: Dense<(i32, String)>,
}

impl Names {
    pub fn method(&self, id: u32) -> std::borrow::Cow<'_, str> {
        match self.methods.get(id) {
            Some(s) => s.as_str().into(),
            None => format!("<method {id}>").into(),
        }
    }

    /// The OS thread id (or the agent's number when unknown) and name of a thread.
    pub fn thread(&self, id: u32) -> (i64, &str) {
        match self.threads.get(id) {
            Some((tid, name)) if *tid > 0 => (i64::from(*tid), name),
            Some((_, name)) => (i64::from(id), name),
            None => (i64::from(id), ""),
        }
    }
}

/// What happened, in the order it happened, for the renderers.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Enter {
        thread: u32,
        depth: usize,
        method: u32,
        t: u64,
        values: Vec<(String, String)>,
    },
    Leave {
        thread: u32,
        depth: usize,
        method: u32,
        start: u64,
        /// When it returned (monotonic, tracer time included: for placing it on a timeline).
        end: u64,
        /// How long it ran, the tracer's own time excluded.
        duration: u64,
    },
    Slow {
        thread: u32,
        depth: u32,
        method: u32,
        start: u64,
        duration: u64,
    },
    Gc {
        count: u64,
        t: u64,
        /// At the end of marking: how long marking took; at the end of sweeping: how long the
        /// whole collection took (when its start was seen).
        mark: Option<u64>,
        total: Option<u64>,
    },
    Lost {
        count: u64,
    },
    /// A message from the agent (not part of the trace itself).
    Note(String),
    /// A logpoint's line ran (`rbscope log`): the values it read, on OS thread `tid` (0 when
    /// unknown) named `thread`, at `t` (CLOCK_MONOTONIC ns). Not from the event records: the
    /// client builds it from the agent's message.
    Log {
        tid: i64,
        thread: String,
        t: u64,
        /// `FILE:LINE` as the user gave it.
        at: String,
        values: Vec<(String, String)>,
    },
}

struct Open {
    method: u32,
    start: u64,
}

#[derive(Default)]
pub struct Timeline {
    pub names: Names,
    stacks: Dense<Vec<Open>>,
    gc_start: Option<(u64, u64)>,
    gc_mark: Option<u64>,
    pub events: u64,
    pub lost: u64,
    pub calls: u64,
}

/// Calls nested deeper than this are still timed but not indented further.
const MAX_DEPTH: usize = 100_000;

impl Timeline {
    /// Feeds a block of records; each step is passed to `out` as it is found.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut out: impl FnMut(&Names, Step),
    ) -> Result<(), DecodeError> {
        for ev in Reader::new(bytes) {
            let ev = ev?;
            self.events += 1;
            match ev {
                Event::Method { id, label } => {
                    self.events -= 1;
                    *self.names.methods.entry(id, String::new) = label.to_string();
                }
                Event::Thread { id, tid, name } => {
                    self.events -= 1;
                    *self.names.threads.entry(id, || (0, String::new())) = (tid, name.to_string());
                }
                Event::Call {
                    thread,
                    method,
                    t,
                    values,
                } => {
                    self.calls += 1;
                    let stack = self.stacks.entry(thread, Vec::new);
                    let depth = stack.len();
                    if depth < MAX_DEPTH {
                        stack.push(Open { method, start: t });
                    }
                    out(
                        &self.names,
                        Step::Enter {
                            thread,
                            depth,
                            method,
                            t,
                            values: if values.is_empty() {
                                Vec::new()
                            } else {
                                values
                                    .into_iter()
                                    .map(|(k, v)| (k.to_string(), v.to_string()))
                                    .collect()
                            },
                        },
                    );
                }
                Event::Return {
                    thread,
                    method,
                    t,
                    duration,
                } => {
                    let stack = self.stacks.entry(thread, Vec::new);
                    let Some(at) = stack.iter().rposition(|o| o.method == method) else {
                        // Its call was lost: nothing to close.
                        continue;
                    };
                    while stack.len() > at + 1 {
                        stack.pop();
                    }
                    let open = stack.pop();
                    let start = open.map(|o| o.start).unwrap_or(t.saturating_sub(duration));
                    out(
                        &self.names,
                        Step::Leave {
                            thread,
                            depth: at,
                            method,
                            start,
                            end: t.max(start),
                            duration,
                        },
                    );
                }
                Event::Slow {
                    thread,
                    method,
                    depth,
                    start,
                    duration,
                } => out(
                    &self.names,
                    Step::Slow {
                        thread,
                        depth,
                        method,
                        start,
                        duration,
                    },
                ),
                Event::Gc { phase, count, t } => {
                    let since = |from: Option<(u64, u64)>| {
                        from.filter(|(c, _)| *c == count)
                            .map(|(_, s)| t.saturating_sub(s))
                    };
                    match phase {
                        GcPhase::Start => {
                            self.gc_start = Some((count, t));
                            self.gc_mark = None;
                        }
                        GcPhase::EndMark => {
                            self.gc_mark = since(self.gc_start);
                        }
                        GcPhase::EndSweep => {
                            let total = since(self.gc_start);
                            out(
                                &self.names,
                                Step::Gc {
                                    count,
                                    t,
                                    mark: self.gc_mark.take(),
                                    total,
                                },
                            );
                            self.gc_start = None;
                        }
                    }
                }
                Event::Lost { count } => {
                    self.events -= 1;
                    self.lost = self.lost.saturating_add(count);
                    out(&self.names, Step::Lost { count });
                }
                Event::Note { text } => {
                    self.events -= 1;
                    out(&self.names, Step::Note(text.to_string()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;

    fn stream(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        build(&mut v);
        v
    }

    #[test]
    fn threads_nest_separately_and_lost_calls_do_not_confuse_returns() {
        let bytes = stream(|v| {
            push_to(v, method_len("A#outer"), |b| write_method(b, 1, "A#outer"));
            push_to(v, method_len("A#inner"), |b| write_method(b, 2, "A#inner"));
            push_to(v, CALL_LEN, |b| write_call(b, 1, 1, 10));
            push_to(v, CALL_LEN, |b| write_call(b, 2, 1, 11));
            push_to(v, CALL_LEN, |b| write_call(b, 1, 2, 12));
            push_to(v, CALL_LEN, |b| write_call(b, 2, 2, 13));
            push_to(v, RETURN_LEN, |b| write_return(b, 2, 2, 20, 7));
            push_to(v, RETURN_LEN, |b| write_return(b, 1, 2, 30, 18));
            // Thread 2's outer return arrives; thread 1's inner call return is lost, and its
            // outer return closes both.
            push_to(v, CALL_LEN, |b| write_call(b, 1, 2, 31));
            push_to(v, RETURN_LEN, |b| write_return(b, 2, 1, 40, 29));
            push_to(v, RETURN_LEN, |b| write_return(b, 1, 1, 50, 40));
            // A return whose call was never seen is dropped.
            push_to(v, RETURN_LEN, |b| write_return(b, 3, 1, 60, 5));
        });
        let mut t = Timeline::default();
        let mut leaves = Vec::new();
        t.feed(&bytes, |names, s| {
            if let Step::Leave {
                thread,
                depth,
                method,
                duration,
                ..
            } = s
            {
                leaves.push((thread, depth, names.method(method).into_owned(), duration));
            }
        })
        .unwrap();
        assert_eq!(
            leaves,
            vec![
                (2, 1, "A#inner".to_string(), 7),
                (1, 1, "A#inner".to_string(), 18),
                (2, 0, "A#outer".to_string(), 29),
                (1, 0, "A#outer".to_string(), 40),
            ]
        );
        assert_eq!(t.calls, 5);
    }

    #[test]
    fn gc_durations() {
        let bytes = stream(|v| {
            push_to(v, GC_LEN, |b| write_gc(b, GcPhase::Start, 5, 100));
            push_to(v, GC_LEN, |b| write_gc(b, GcPhase::EndMark, 5, 130));
            push_to(v, GC_LEN, |b| write_gc(b, GcPhase::EndSweep, 5, 170));
            // A sweep end whose start was not seen.
            push_to(v, GC_LEN, |b| write_gc(b, GcPhase::EndSweep, 6, 300));
        });
        let mut got = Vec::new();
        Timeline::default()
            .feed(&bytes, |_, s| got.push(s))
            .unwrap();
        assert_eq!(
            got,
            vec![
                Step::Gc {
                    count: 5,
                    t: 170,
                    mark: Some(30),
                    total: Some(70)
                },
                Step::Gc {
                    count: 6,
                    t: 300,
                    mark: None,
                    total: None
                }
            ]
        );
    }
}
