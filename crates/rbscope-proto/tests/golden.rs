//! Freezes the bytes of protocol 7 (and checks that protocols 5 and 6's keep theirs).
//!
//! The agent inside an app and the CLI on the operator's machine are upgraded separately; the
//! handshake turns a version mismatch into advice, which only works if the bytes of a version
//! never change silently. This test encodes every message of both directions (requests,
//! replies, stream records, errors, the handshake), each with every field set, with the real
//! framing, and compares each frame byte for byte with a committed fixture; it also decodes
//! every fixture back to the same message and reads them all as one stream. The exhaustive
//! `match`es below stop compiling when a message, a frame kind or a parameter kind is added, so
//! a new one cannot escape the fixtures either.
//!
//! To rewrite the fixtures on purpose: `RBSCOPE_UPDATE_GOLDEN=1 cargo test -p rbscope-proto
//! --test golden`.

use rbscope_proto::facts::{Clause, FrameFacts, MethodKind, Param, Params};
use rbscope_proto::*;
use std::collections::BTreeSet;
use std::path::PathBuf;

const UPDATE_ENV: &str = "RBSCOPE_UPDATE_GOLDEN";

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/protocol-{PROTOCOL_VERSION}"))
}

// The exhaustive matches: a new message (or frame fact) stops these from compiling, so the
// fixtures have to grow with it.

const CLIENT_MESSAGES: &[&str] = &[
    "hello",
    "status",
    "stacks",
    "trace",
    "detach",
    "eval",
    "cancel",
    "memory",
    "heap-dump",
    "heap-count",
    "heap-track",
    "snapshot",
    "break",
    "point",
];

fn client_name(m: &ClientMessage) -> &'static str {
    match m {
        ClientMessage::Hello(_) => "hello",
        ClientMessage::Status => "status",
        ClientMessage::Stacks { .. } => "stacks",
        ClientMessage::Trace(_) => "trace",
        ClientMessage::Detach => "detach",
        ClientMessage::Eval(_) => "eval",
        ClientMessage::Cancel => "cancel",
        ClientMessage::Memory { .. } => "memory",
        ClientMessage::HeapDump(_) => "heap-dump",
        ClientMessage::HeapCount(_) => "heap-count",
        ClientMessage::HeapTrack { .. } => "heap-track",
        ClientMessage::Snapshot(_) => "snapshot",
        ClientMessage::Break(_) => "break",
        ClientMessage::Point(_) => "point",
    }
}

const AGENT_MESSAGES: &[&str] = &[
    "welcome",
    "refused",
    "status",
    "error",
    "stacks",
    "busy",
    "tracing",
    "events",
    "detached",
    "evaluated",
    "memory",
    "heap-dumped",
    "heap-census",
    "heap-tracking",
    "snapshots",
    "break-set",
    "break-hit",
    "break-note",
    "break-ended",
    "log-hit",
];

fn agent_name(m: &AgentMessage) -> &'static str {
    match m {
        AgentMessage::Welcome(_) => "welcome",
        AgentMessage::Refused(_) => "refused",
        AgentMessage::Status(_) => "status",
        AgentMessage::Error(_) => "error",
        AgentMessage::Stacks(_) => "stacks",
        AgentMessage::Busy(_) => "busy",
        AgentMessage::Tracing(_) => "tracing",
        AgentMessage::Events(_) => "events",
        AgentMessage::Detached(_) => "detached",
        AgentMessage::Evaluated(_) => "evaluated",
        AgentMessage::Memory(_) => "memory",
        AgentMessage::HeapDumped(_) => "heap-dumped",
        AgentMessage::HeapCensus(_) => "heap-census",
        AgentMessage::HeapTracking { .. } => "heap-tracking",
        AgentMessage::Snapshots(_) => "snapshots",
        AgentMessage::BreakSet(_) => "break-set",
        AgentMessage::BreakHit(_) => "break-hit",
        AgentMessage::BreakNote(_) => "break-note",
        AgentMessage::BreakEnded(_) => "break-ended",
        AgentMessage::LogHit(_) => "log-hit",
    }
}

/// Every kind of fact a stack frame carries on the wire.
const FRAME_FACTS: &[&str] = &[
    "instance",
    "class-level",
    "object-singleton",
    "refinement",
    "top-level",
    "no-clause",
    "rescue",
    "ensure",
    "params-known",
    "params-unknown",
    "req",
    "req-unnamed",
    "opt",
    "rest",
    "rest-unnamed",
    "post",
    "post-unnamed",
    "keyreq",
    "key",
    "keyrest",
    "keyrest-unnamed",
    "nokey",
    "block",
    "block-unnamed",
];

fn facts_kinds(f: &FrameFacts) -> Vec<&'static str> {
    let FrameFacts {
        class_path: _,
        method_name: _,
        kind,
        block_depth: _,
        clause,
        params,
    } = f;
    let mut out = vec![
        match kind {
            MethodKind::Instance => "instance",
            MethodKind::ClassLevel => "class-level",
            MethodKind::ObjectSingleton => "object-singleton",
            MethodKind::Refinement { .. } => "refinement",
            MethodKind::TopLevel => "top-level",
        },
        match clause {
            None => "no-clause",
            Some(Clause::Rescue) => "rescue",
            Some(Clause::Ensure) => "ensure",
        },
    ];
    match params {
        Params::Unknown => out.push("params-unknown"),
        Params::Known(list) => {
            out.push("params-known");
            out.extend(list.iter().map(|p| match p {
                Param::Req(Some(_)) => "req",
                Param::Req(None) => "req-unnamed",
                Param::Opt(_) => "opt",
                Param::Rest(Some(_)) => "rest",
                Param::Rest(None) => "rest-unnamed",
                Param::Post(Some(_)) => "post",
                Param::Post(None) => "post-unnamed",
                Param::KeyReq(_) => "keyreq",
                Param::Key(_) => "key",
                Param::KeyRest(Some(_)) => "keyrest",
                Param::KeyRest(None) => "keyrest-unnamed",
                Param::NoKey => "nokey",
                Param::Block(Some(_)) => "block",
                Param::Block(None) => "block-unnamed",
            }));
        }
    }
    out
}

fn facts(
    class: &str,
    method: &str,
    kind: MethodKind,
    depth: u32,
    clause: Option<Clause>,
    params: Params,
) -> FrameFacts {
    FrameFacts {
        class_path: class.into(),
        method_name: method.into(),
        kind,
        block_depth: depth,
        clause,
        params,
    }
}

/// A frame, with its label written out: the label is a string on the wire, made by the
/// backtrace crate, and this test pins the protocol's bytes alone.
fn frame(path: &str, line: Option<i64>, label: &str, facts: FrameFacts, cfunc: bool) -> StackFrame {
    StackFrame {
        path: path.into(),
        line,
        label: label.into(),
        facts,
        cfunc,
    }
}

/// Stacks whose frames carry every kind of fact.
fn stacks() -> Stacks {
    let s = |n: &str| Some(n.to_string());
    let frames = vec![
        frame(
            "app/models/invoice.rb",
            Some(13),
            "Billing::Invoice#total{block}{block}{rescue}(a, (), b, *c, d, (), e:, f:, **g, &h)",
            facts(
                "Billing::Invoice",
                "total",
                MethodKind::Instance,
                2,
                Some(Clause::Rescue),
                Params::Known(vec![
                    Param::Req(s("a")),
                    Param::Req(None),
                    Param::Opt("b".into()),
                    Param::Rest(s("c")),
                    Param::Post(s("d")),
                    Param::Post(None),
                    Param::KeyReq("e".into()),
                    Param::Key("f".into()),
                    Param::KeyRest(s("g")),
                    Param::Block(s("h")),
                ]),
            ),
            false,
        ),
        frame(
            "<internal:kernel>",
            None,
            "Kernel.loop{ensure}(*, **, &)",
            facts(
                "Kernel",
                "loop",
                MethodKind::ClassLevel,
                0,
                Some(Clause::Ensure),
                Params::Known(vec![
                    Param::Rest(None),
                    Param::KeyRest(None),
                    Param::Block(None),
                ]),
            ),
            true,
        ),
        frame(
            "lib/config.rb",
            Some(i64::MAX),
            "Config$singleton#fetch(**nil)",
            facts(
                "Config",
                "fetch",
                MethodKind::ObjectSingleton,
                0,
                None,
                Params::Known(vec![Param::NoKey]),
            ),
            false,
        ),
        frame(
            "lib/refines.rb",
            Some(-1),
            "String$refinement@Mod::Refines#shout{block}()",
            facts(
                "String",
                "shout",
                MethodKind::Refinement {
                    refined_in: "Mod::Refines".into(),
                },
                1,
                None,
                Params::Known(vec![]),
            ),
            false,
        ),
        frame(
            "",
            Some(0),
            "IO#read(*)",
            facts("IO", "read", MethodKind::Instance, 0, None, Params::Unknown),
            true,
        ),
        frame(
            "script.rb",
            Some(1),
            "Object$singleton#<main>()",
            facts(
                "Object",
                "<main>",
                MethodKind::TopLevel,
                0,
                None,
                Params::Known(vec![]),
            ),
            false,
        ),
    ];
    Stacks {
        threads: vec![
            ThreadStack {
                name: s("puma srv tp 001"),
                tid: Some(4242),
                status: "running".into(),
                main: true,
                frames,
            },
            ThreadStack {
                name: None,
                tid: None,
                status: "sleeping".into(),
                main: false,
                frames: vec![],
            },
        ],
        held_us: 1_234,
        waited_us: u64::MAX,
    }
}

/// The client's messages, each with every field set (and a second sample where a field is
/// optional), named after their fixture files.
fn client_messages() -> Vec<(String, ClientMessage)> {
    let m = vec![
        (
            "",
            ClientMessage::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client_version: "0.1.0".into(),
            }),
        ),
        ("", ClientMessage::Status),
        ("", ClientMessage::Stacks { wait_ms: 2_000 }),
        (
            "",
            ClientMessage::Trace(TraceRequest {
                firehose: true,
                selectors: vec!["User#save".into(), "Foo#bar(self, arg)".into()],
                slow_ms: Some(250),
                gc: true,
                force: true,
                wait_ms: 5_000,
                wait_for_code: true,
            }),
        ),
        (
            "-defaults",
            ClientMessage::Trace(TraceRequest {
                firehose: false,
                selectors: vec![],
                slow_ms: None,
                gc: false,
                force: false,
                wait_ms: 0,
                wait_for_code: false,
            }),
        ),
        ("", ClientMessage::Detach),
        (
            "",
            ClientMessage::Eval(EvalRequest {
                code: "User.count\n".into(),
                timeout_ms: 10_000,
                binding: Some(u64::MAX),
            }),
        ),
        (
            "-fresh-binding",
            ClientMessage::Eval(EvalRequest {
                code: String::new(),
                timeout_ms: 0,
                binding: None,
            }),
        ),
        ("", ClientMessage::Cancel),
        ("", ClientMessage::Memory { wait_ms: 300 }),
        (
            "",
            ClientMessage::HeapDump(HeapDumpRequest {
                path: Some("tmp/heap.json.gz".into()),
                gzip: true,
                gc: true,
                in_process: true,
                wait_ms: 60_000,
            }),
        ),
        (
            "-defaults",
            ClientMessage::HeapDump(HeapDumpRequest {
                path: None,
                gzip: false,
                gc: false,
                in_process: false,
                wait_ms: 1,
            }),
        ),
        (
            "",
            ClientMessage::HeapCount(HeapCountRequest {
                names: vec!["MyApp".into(), "User".into()],
                wait_ms: 128,
            }),
        ),
        (
            "",
            ClientMessage::HeapTrack {
                on: true,
                wait_ms: 1_000,
            },
        ),
        (
            "",
            ClientMessage::Snapshot(SnapshotRequest {
                threads: vec!["worker-1".into(), "4242".into()],
                all: false,
                wait_ms: 2_000,
            }),
        ),
        (
            "",
            ClientMessage::Break(BreakRequest {
                file: "app/models/order.rb".into(),
                line: 42,
                max: 3,
                for_ms: 600_000,
                wait_ms: 5_000,
                condition: Some("order.total > 100 and @user.email =~ /@x\\.test$/".into()),
                force: true,
            }),
        ),
        (
            "",
            ClientMessage::Point(PointRequest {
                at: BreakRequest {
                    file: "app/models/order.rb".into(),
                    line: 42,
                    max: 0,
                    for_ms: 600_000,
                    wait_ms: 5_000,
                    condition: Some("@state == :paid".into()),
                    force: false,
                },
                every_ms: 1_000,
                values: vec!["order.id".into(), "@user.email".into(), "self".into()],
            }),
        ),
    ];
    m.into_iter()
        .map(|(suffix, msg)| (format!("client-{}{suffix}", client_name(&msg)), msg))
        .collect()
}

/// The agent's messages, each with every field set, named after their fixture files.
fn agent_messages() -> Vec<(String, AgentMessage)> {
    let m = vec![
        (
            "",
            AgentMessage::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                agent_version: "0.1.0".into(),
                pid: 4_194_304,
                ruby_version: "3.3.4".into(),
            }),
        ),
        (
            "",
            AgentMessage::Refused(mismatch_advice(PROTOCOL_VERSION + 1, PROTOCOL_VERSION)),
        ),
        (
            "",
            AgentMessage::Status(AgentStatus {
                started: true,
                store: "/home/app/.local/share/rbscope/snapshots.db".into(),
                settings: vec![
                    ("max_depth".into(), "4".into()),
                    ("redact".into(), "password,token".into()),
                ],
                counters: vec![("captured".into(), 12), ("dropped".into(), u64::MAX)],
                warnings: vec!["YJIT is on".into()],
            }),
        ),
        (
            "",
            AgentMessage::Error("eval is not allowed in this process".into()),
        ),
        ("", AgentMessage::Stacks(stacks())),
        (
            "",
            AgentMessage::Busy("the VM did not give the agent a turn in 2000 ms".into()),
        ),
        (
            "",
            AgentMessage::Tracing(TraceStarted {
                hooked: vec!["User#save".into(), "GC".into()],
                skipped: vec!["Foo#bar: no such method".into()],
                waiting: vec!["Later#run".into()],
                ring_bytes: 4 << 20,
                install_us: 873,
                clock: "tsc".into(),
            }),
        ),
        (
            "",
            AgentMessage::Events(vec![0, 1, 2, 0x7f, 0x80, 0xff, 0, 42]),
        ),
        (
            "",
            AgentMessage::Detached(TraceSummary {
                events: 1_000_000,
                lost: 3,
            }),
        ),
        (
            "",
            AgentMessage::Evaluated(EvalResult {
                ok: true,
                text: "=> 42 \u{1F600}".into(),
                elapsed_us: 17,
                incomplete: true,
            }),
        ),
        (
            "",
            AgentMessage::Memory(MemoryReport {
                gc: vec![("count".into(), 12), ("heap_live_slots".into(), i64::MIN)],
                objects: vec![("TOTAL".into(), 40_000), ("T_STRING".into(), -1)],
                heap_page_bytes: 65_536,
                malloc: vec![("arena".into(), 1 << 33)],
                threads: 5,
                held_us: 99,
            }),
        ),
        (
            "",
            AgentMessage::HeapDumped(HeapDumpResult {
                path: "/run/user/1000/rbscope/heap-4242.json.gz".into(),
                objects: 123_456,
                roots: 789,
                bytes: 9_876_543,
                pause_us: 12_000,
                gc_us: 34_000,
                total_us: 5_600_000,
                forked: true,
                allocation_info: true,
            }),
        ),
        (
            "",
            AgentMessage::HeapCensus(HeapCensus {
                objects: 40_000,
                by_type: vec![("T_STRING".into(), 20_000), ("T_ARRAY".into(), 3)],
                classes: vec![("User".into(), 12), ("MyApp::Order".into(), 0)],
                held_us: 4_500,
            }),
        ),
        (
            "",
            AgentMessage::HeapTracking {
                on: true,
                was_on: false,
            },
        ),
        (
            "",
            AgentMessage::Snapshots(SnapshotsTaken {
                taken: vec![
                    TakenSnapshot {
                        thread: "worker-1".into(),
                        tid: Some(4242),
                        id: Some("01HZX0000000000000000000AA".into()),
                        note: None,
                    },
                    TakenSnapshot {
                        thread: "#<Thread:0x00007f00deadbeef run>".into(),
                        tid: None,
                        id: None,
                        note: Some("rate limited".into()),
                    },
                ],
                held_us: 1_250,
                waited_us: 30,
            }),
        ),
        (
            "",
            AgentMessage::BreakSet(BreakSet {
                file: "/srv/app/app/models/order.rb".into(),
                line: 42,
                hooked: "block in Order#total".into(),
                waiting: Some("app/models/order.rb is not loaded yet".into()),
            }),
        ),
        (
            "",
            AgentMessage::BreakHit(BreakHit {
                n: 2,
                id: Some("01HZX0000000000000000000AB".into()),
                note: Some("rate limited".into()),
            }),
        ),
        (
            "",
            AgentMessage::BreakNote("set again: the file was loaded again".into()),
        ),
        ("", AgentMessage::BreakEnded("3 hits (--max 3)".into())),
        (
            "",
            AgentMessage::LogHit(LogHit {
                n: 7,
                t_ns: 1_234_567_890_123,
                tid: Some(4243),
                thread: "worker-1".into(),
                values: vec![
                    ("order.id".into(), "5".into()),
                    ("@user.email".into(), "\"a@b.c\"".into()),
                ],
            }),
        ),
    ];
    m.into_iter()
        .map(|(suffix, msg)| (format!("agent-{}{suffix}", agent_name(&msg)), msg))
        .collect()
}

#[test]
fn the_samples_use_every_message_and_frame_fact() {
    let client: BTreeSet<_> = client_messages()
        .iter()
        .map(|(_, m)| client_name(m))
        .collect();
    assert_eq!(
        client,
        CLIENT_MESSAGES.iter().copied().collect(),
        "every client message"
    );
    let agent: BTreeSet<_> = agent_messages()
        .iter()
        .map(|(_, m)| agent_name(m))
        .collect();
    assert_eq!(
        agent,
        AGENT_MESSAGES.iter().copied().collect(),
        "every agent message"
    );
    let facts: BTreeSet<_> = stacks()
        .threads
        .iter()
        .flat_map(|t| t.frames.iter())
        .flat_map(|f| facts_kinds(&f.facts))
        .collect();
    assert_eq!(
        facts,
        FRAME_FACTS.iter().copied().collect(),
        "every frame fact"
    );
}

fn framed<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    write_frame(&mut buf, msg).unwrap();
    buf
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn changed(what: &str) -> String {
    format!(
        "the protocol changed: bump PROTOCOL_VERSION (crates/rbscope-proto/src/message.rs) so \
         that an agent and a CLI of different versions refuse each other with advice instead of \
         misreading each other, and add fixtures for the new version. {what}\n\
         If the change is intended and made that way, write the new fixtures: \
         {UPDATE_ENV}=1 cargo test -p rbscope-proto --test golden"
    )
}

/// Compares every sample with its fixture (or rewrites them all when asked), and decodes every
/// fixture back to its sample.
fn check_all<T>(samples: &[(String, T)])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let dir = fixtures_dir();
    if std::env::var_os(UPDATE_ENV).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, msg) in samples {
            std::fs::write(dir.join(format!("{name}.bin")), framed(msg)).unwrap();
        }
        eprintln!("rewrote {} fixtures in {}", samples.len(), dir.display());
        return;
    }
    let mut failures = Vec::new();
    for (name, msg) in samples {
        let path = dir.join(format!("{name}.bin"));
        let expected = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name}: no fixture {} ({e})", path.display()));
                continue;
            }
        };
        let actual = framed(msg);
        if expected != actual {
            failures.push(format!(
                "{name}: the fixture is {} bytes, this build writes {} (first difference at \
                 byte {})",
                expected.len(),
                actual.len(),
                first_difference(&expected, &actual)
            ));
        }
        match read_frame::<_, T>(&mut expected.as_slice()) {
            Ok(back) if &back == msg => {}
            Ok(back) => failures.push(format!("{name}: the fixture decodes to {back:?}")),
            Err(e) => failures.push(format!("{name}: the fixture no longer decodes: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", changed(&failures.join("\n")));
}

#[test]
fn protocol_7_bytes_are_frozen() {
    assert_eq!(
        PROTOCOL_VERSION, 7,
        "PROTOCOL_VERSION changed: keep the protocol-5, protocol-6 and protocol-7 fixtures as \
         they are (old agents still speak them) and write fixtures for the new version"
    );
    check_all(&client_messages());
    check_all(&agent_messages());
}

/// Every message of an older protocol (its fixtures, kept as they were written) reads and
/// writes the same bytes now: protocols 6 and 7 only added messages.
fn older_messages_keep_their_bytes(version: u32, fixtures: usize) {
    let dir = fixtures_dir().with_file_name(format!("protocol-{version}"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let again = if name.starts_with("client-") {
            framed(&read_frame::<_, ClientMessage>(&mut bytes.as_slice()).unwrap())
        } else {
            framed(&read_frame::<_, AgentMessage>(&mut bytes.as_slice()).unwrap())
        };
        assert_eq!(again, bytes, "protocol {version}: {name}");
        n += 1;
    }
    assert_eq!(n, fixtures, "the protocol-{version} fixtures");
}

#[test]
fn protocol_5_messages_keep_their_bytes() {
    older_messages_keep_their_bytes(5, 28);
}

#[test]
fn protocol_6_messages_keep_their_bytes() {
    older_messages_keep_their_bytes(6, 35);
}

#[test]
fn no_fixture_is_left_without_a_message() {
    if std::env::var_os(UPDATE_ENV).is_some() {
        return;
    }
    let client = client_messages().into_iter().map(|(n, _)| n);
    let agent = agent_messages().into_iter().map(|(n, _)| n);
    let want: BTreeSet<String> = client.chain(agent).map(|n| format!("{n}.bin")).collect();
    let have: BTreeSet<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        have,
        want,
        "the fixtures in {} are not the messages this test writes: a message was removed or \
         renamed ({})",
        fixtures_dir().display(),
        changed("")
    );
}

/// The fixtures, one after the other, read back as a connection carries them: each frame ends
/// where its length says, and the end of the stream is `Closed`.
#[test]
fn the_fixtures_read_as_one_stream() {
    let mut stream = Vec::new();
    let client = client_messages();
    for (name, _) in &client {
        stream.extend(std::fs::read(fixtures_dir().join(format!("{name}.bin"))).unwrap());
    }
    let mut r = stream.as_slice();
    for (name, msg) in &client {
        let got: ClientMessage = read_frame(&mut r).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&got, msg, "{name}");
    }
    assert!(matches!(
        read_frame::<_, ClientMessage>(&mut r),
        Err(FrameError::Closed)
    ));

    let mut stream = Vec::new();
    let agent = agent_messages();
    for (name, _) in &agent {
        stream.extend(std::fs::read(fixtures_dir().join(format!("{name}.bin"))).unwrap());
    }
    let mut r = stream.as_slice();
    for (name, msg) in &agent {
        let got: AgentMessage = read_frame(&mut r).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&got, msg, "{name}");
    }
    assert!(matches!(
        read_frame::<_, AgentMessage>(&mut r),
        Err(FrameError::Closed)
    ));
}

/// The handshake's first bytes, by hand: the length, then the variant index of `Hello` and the
/// version as postcard varints. An old client or agent reads at least this much of a newer peer.
#[test]
fn the_handshake_starts_with_the_version() {
    let hello = framed(&ClientMessage::Hello(Hello {
        protocol_version: 5,
        client_version: "0.1.0".into(),
    }));
    assert_eq!(hello, [8, 0, 0, 0, 0, 5, 5, b'0', b'.', b'1', b'.', b'0']);
    let welcome = framed(&AgentMessage::Welcome(Welcome {
        protocol_version: 5,
        agent_version: "0.1.0".into(),
        pid: 300,
        ruby_version: "3.3.4".into(),
    }));
    assert_eq!(
        welcome,
        [
            16, 0, 0, 0, 0, 5, 5, b'0', b'.', b'1', b'.', b'0', 0xac, 0x02, 5, b'3', b'.', b'3',
            b'.', b'4'
        ]
    );
}
