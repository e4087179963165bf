//! The agent as the control server (`crate::control`) sees it: [`StatusSource`], what it was
//! started with, its live counters, and the queue of its Ruby thread, where a heap request
//! goes as [`HeapWork`].

use super::counters::{self, Counters};
use super::failures::{self, Feature};
use super::heap_job::{self, Job, Outcome};
use crate::control::{self, ask, Count, Evals, Handler, HeapRequest};
use rbscope_proto::{AgentMessage, AgentStatus};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Instant;

/// Work for the agent's Ruby thread (the heap jobs are the agent's own kind).
pub type Work = control::Work<HeapWork>;
/// Where the control thread hands work over.
pub type WorkQueue = control::WorkQueue<HeapWork>;

/// A heap job (dump, census, allocation tracing); the answer goes to `reply` unless `deadline`
/// passed (then nothing is done).
pub struct HeapWork {
    pub job: Job,
    pub deadline: Instant,
    pub reply: SyncSender<Outcome>,
}

/// Whether `work` waited past its deadline (`now`): then it is dropped, not done late (its
/// reply goes unanswered: the client gave up). Only work with a reply has a deadline.
pub fn late(work: &Work, now: Instant) -> bool {
    match work {
        Work::Stacks { deadline, .. }
        | Work::Snapshot { deadline, .. }
        | Work::Attach { deadline, .. }
        | Work::Memory { deadline, .. }
        | Work::Break { deadline, .. }
        | Work::Heap(HeapWork { deadline, .. }) => now > *deadline,
        _ => false,
    }
}

/// What the control thread may show; copied at start, counters live.
pub struct StatusSource {
    pub store: String,
    pub settings: Vec<(String, String)>,
    pub warnings: Vec<String>,
    pub counters: Arc<Counters>,
    pub ruby_version: String,
    /// The agent's Ruby thread, when it runs (requests that need the VM go there).
    pub work: Option<WorkQueue>,
    /// Where eval results arrive (the agent's `Rbscope::Native.eval_done` fills it).
    pub evals: &'static Evals,
    pub allow_eval: bool,
    /// YJIT is on and this is Ruby 3.1: any trace hook slows the app until it restarts.
    pub yjit_hooks_last: bool,
    /// Bytes of each trace session's event ring.
    pub trace_buffer: usize,
    /// The store writer, to wait for a live snapshot to be stored before answering.
    pub writer: Option<crate::writer::Writer>,
}

impl Handler for StatusSource {
    type Heap = HeapWork;

    /// The server's threads run under the agent's panic guard, as live attach.
    fn guarded(&self, what: &'static str, body: impl FnOnce()) {
        failures::run(Feature::Live, what, (), body)
    }

    fn count(&self, what: Count) {
        self.counters.count(what)
    }

    fn ruby_version(&self) -> String {
        self.ruby_version.clone()
    }

    fn status(&self) -> AgentStatus {
        let (store, settings) = (self.store.clone(), self.settings.clone());
        let mut status = counters::status(store, settings, &self.counters, &self.warnings);
        let set = control::breakpoints_set();
        status.counters.push(("breakpoints_set".into(), set));
        status
    }

    fn queue(&self) -> Option<&WorkQueue> {
        self.work.as_ref()
    }

    fn evals(&self) -> &Evals {
        self.evals
    }

    fn allow_eval(&self) -> bool {
        self.allow_eval
    }

    fn yjit_hooks_last(&self) -> bool {
        self.yjit_hooks_last
    }

    fn trace_buffer(&self) -> usize {
        self.trace_buffer
    }

    fn stored(&self, timeout: std::time::Duration) -> bool {
        self.writer.as_ref().is_none_or(|w| w.flush(timeout))
    }

    /// A heap job on the agent's Ruby thread; a dump written by a forked child is waited for
    /// on the connection's thread, however long it takes, without holding the VM.
    fn heap(&self, request: HeapRequest) -> AgentMessage {
        let (wait_ms, job) = Job::of(request);
        let work = |deadline, reply| {
            control::Work::Heap(HeapWork {
                job,
                deadline,
                reply,
            })
        };
        ask(self.work.as_ref(), wait_ms, work, |o| {
            o.answer(heap_job::finish)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    static EVALS: Evals = Evals::new();

    fn source(work: Option<WorkQueue>) -> StatusSource {
        StatusSource {
            store: "/var/rbscope".into(),
            settings: vec![("capture".into(), "fast".into())],
            warnings: vec!["a warning".into()],
            counters: Arc::new(Counters::default()),
            ruby_version: "3.4.1".into(),
            work,
            evals: &EVALS,
            allow_eval: true,
            yjit_hooks_last: false,
            trace_buffer: 4096,
            writer: None,
        }
    }

    #[test]
    fn status_and_facts_come_from_what_the_agent_started_with() {
        let s = source(None);
        s.count(Count::TraceStarted);
        let status = s.status();
        assert_eq!(status.store, "/var/rbscope");
        assert_eq!(
            status.warnings.first().map(String::as_str),
            Some("a warning")
        );
        let traces = status.counters.iter().find(|(n, _)| n == "traces_started");
        assert_eq!(traces.map(|(_, v)| *v), Some(1));
        assert_eq!((s.ruby_version(), s.trace_buffer()), ("3.4.1".into(), 4096));
        assert!(s.allow_eval() && !s.yjit_hooks_last() && s.queue().is_none());
    }

    #[test]
    fn a_heap_request_goes_to_the_ruby_thread_or_is_refused_without_one() {
        let track = || HeapRequest::Track {
            on: true,
            wait_ms: 2000,
        };
        match source(None).heap(track()) {
            AgentMessage::Busy(m) => assert_eq!(m, control::NO_AGENT_THREAD),
            other => panic!("{other:?}"),
        }
        let (queue, inbox) = control::work_queue(2, || {});
        let thread = std::thread::spawn(move || {
            let work = inbox.wait();
            inbox.took(&work);
            let Work::Heap(HeapWork { job, reply, .. }) = work else {
                panic!("not heap work");
            };
            assert!(matches!(job, Job::Track(true)));
            let done = AgentMessage::HeapTracking {
                on: true,
                was_on: false,
            };
            reply.send(Outcome::Done(done)).unwrap();
        });
        let answer = source(Some(queue)).heap(track());
        assert!(matches!(
            answer,
            AgentMessage::HeapTracking {
                on: true,
                was_on: false
            }
        ));
        thread.join().unwrap();
    }

    #[test]
    fn only_work_past_its_deadline_is_late() {
        let now = Instant::now();
        let (reply, _answer) = std::sync::mpsc::sync_channel(1);
        let heap = Work::Heap(HeapWork {
            job: Job::Track(false),
            deadline: now,
            reply,
        });
        assert!(!late(&heap, now));
        assert!(late(&heap, now + Duration::from_millis(1)));
        assert!(!late(&Work::Retry { id: 1 }, now + Duration::from_secs(9)));
    }
}
