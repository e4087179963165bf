//! Every thread's stack read from the core dumps the rbspy project recorded for Ruby 3.1.0,
//! 3.2.0, 3.3.0, 3.4.5 and 4.0.0 (crate `rbspy-testdata`), at the VM and symbol-table
//! addresses those dumps were recorded with. The programs are rbspy's `ci/ruby-programs`, so
//! the expected frames are known from their source: class paths, `#`/`.`/`$singleton`, block
//! depth, parameters and the line each frame is executing (rbspy's own expectations for the
//! same dumps have each method's last line instead, and no classes before 3.3).

use rbscope_vm::memory::{Memory, ReadError};
use rbscope_vm::objects::Objects;
use rbscope_vm::stacks::{self, ReadOptions, Stacks};
use rbscope_vm::target::Target;
use remoteprocess::ProcessMemory as _;

struct Dump(rbspy_testdata::CoreDump);

impl Memory for Dump {
    fn read_word(&self, addr: usize) -> Result<usize, ReadError> {
        let mut b = [0u8; 8];
        self.read_bytes(addr, &mut b)?;
        Ok(usize::from_ne_bytes(b))
    }
    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result<(), ReadError> {
        self.0
            .read(addr, buf)
            .map_err(|_| ReadError::Unreadable(addr))
    }
}

fn stacks(dump: rbspy_testdata::CoreDump, version: &str, vm_ptr: usize, syms: usize) -> Stacks {
    let mem = Dump(dump);
    let target = Target::known(version, vm_ptr, Some(syms)).unwrap();
    let vm = target.vm(&mem).unwrap();
    let o = Objects::new(&mem, target.layout, target.global_symbols).with_vm(vm);
    stacks::read_all(&o, vm, ReadOptions::default(), &|| {}).unwrap()
}

/// The one thread's frames as `file:line Label(params)`.
fn frames(s: &Stacks) -> Vec<String> {
    assert_eq!(s.threads.len(), 1, "these programs run one thread");
    let t = &s.threads[0];
    assert!(t.main);
    assert_eq!(t.error, None);
    t.frames
        .iter()
        .map(|f| {
            let file = f.path.rsplit('/').next().unwrap_or("");
            format!("{file}:{} {}", f.line.unwrap_or(0), f.label)
        })
        .collect()
}

const EXPECTED_3_1_0: &[&str] = &[
    "infinite.rb:2 Kernel#sleep(*)",
    "infinite.rb:2 Object#aaa()",
    "infinite.rb:6 Object#bbb()",
    "infinite.rb:10 Object#ccc()",
    "infinite.rb:14 Object$singleton#<main>{block}()",
    "infinite.rb:13 Kernel#loop()",
    "infinite.rb:13 Object$singleton#<main>()",
];

const EXPECTED_3_3_0: &[&str] = &[
    "infinite_on_cpu_with_classes.rb:9 Kernel#sleep(*)",
    "infinite_on_cpu_with_classes.rb:9 A#aaa()",
    "infinite_on_cpu_with_classes.rb:16 B::Ab#bbb()",
    "infinite_on_cpu_with_classes.rb:24 C::Cb#ccc()",
    "infinite_on_cpu_with_classes.rb:31 Object#looper{block}()",
    "<internal:kernel>:187 Kernel#loop()",
    "infinite_on_cpu_with_classes.rb:30 Object#looper()",
    "infinite_on_cpu_with_classes.rb:35 Object$singleton#<main>()",
];

const EXPECTED_3_4_5: &[&str] = &[
    "interesting_backtrace_helper.rb:40 Kernel#sleep(*)",
    "interesting_backtrace_helper.rb:40 ClassA#hello{block}()",
    "<internal:kernel>:168 Kernel#loop()",
    "interesting_backtrace_helper.rb:39 ClassA#hello()",
    "interesting_backtrace_helper.rb:48 ModuleB::ClassB#hello()",
    "interesting_backtrace_helper.rb:55 ModuleC.hello()",
    "interesting_backtrace_helper.rb:61 ClassWithStaticMethod.hello()",
    "interesting_backtrace_helper.rb:67 ModuleD#hello()",
    "interesting_backtrace_helper.rb:75 Object$singleton#<top (required)>{block}()",
    "interesting_backtrace_helper.rb:77 Object$singleton#<top (required)>{block}()",
    "interesting_backtrace_helper.rb:84 ClassD$singleton#hello()",
    "interesting_backtrace_helper.rb:89 ClassE#hello()",
    "interesting_backtrace_helper.rb:104 UnboundMethod#bind_call(*)",
    "interesting_backtrace_helper.rb:104 ClassG$refinement@ContainsRefinement::RefinesClassG#hello()",
    "interesting_backtrace_helper.rb:117 ModuleE.hello()",
    "interesting_backtrace_helper.rb:125 ClassH#method_missing(name, *_)",
    "interesting_backtrace_helper.rb:132 ClassF#hello{block}(arg1, arg2, test1, test2)",
    "<internal:numeric>:257 Integer#times()",
    "interesting_backtrace_helper.rb:131 ClassF#hello(arg1, arg2, test1, test2)",
    "interesting_backtrace_helper.rb:139 ClassI#hello()",
    "interesting_backtrace_helper.rb:146 #<Class:#<Object:0x00007f270362f850>>.hello()",
    "interesting_backtrace_helper.rb:151 #<Class:0x00007f27035dee28>#hello()",
    "interesting_backtrace_helper.rb:157 #<Module:0x00007f27035dece8>.hello()",
    "interesting_backtrace_helper.rb:162 Object#method_with_complex_parameters(a, b, *c, (), f:, g:, **h, &i)",
    "interesting_backtrace_helper.rb:173 ClassJ#hello{block}{block}()",
    "interesting_backtrace_helper.rb:167 ClassJ#hello_helper()",
    "interesting_backtrace_helper.rb:172 ClassJ#hello{block}()",
    "interesting_backtrace_helper.rb:167 ClassJ#hello_helper()",
    "interesting_backtrace_helper.rb:171 ClassJ#hello()",
    "interesting_backtrace_helper.rb:181 ClassK#hello()",
    "interesting_backtrace_helper.rb:181 Kernel#eval(*)",
    "interesting_backtrace_helper.rb:181 ClassK#hello()",
    "interesting_backtrace_helper.rb:187):1 ClassL#hello()",
    "interesting_backtrace_helper.rb:187 BasicObject#instance_eval(*)",
    "interesting_backtrace_helper.rb:187 ClassL#hello()",
    "interesting_backtrace_helper.rb:193):1 ClassM#hello()",
    "interesting_backtrace_helper.rb:193 Kernel#eval(*)",
    "interesting_backtrace_helper.rb:193 ClassM#hello()",
    "interesting_backtrace_helper.rb:200 ClassN#hello{block}()",
    "<internal:numeric>:257 Integer#times()",
    "interesting_backtrace_helper.rb:199 ClassN#hello()",
    "interesting_backtrace_helper.rb:206 Object#top_level_hello()",
    "cme_complex_labels.rb:5 InstanceMethod#work()",
    "cme_complex_labels.rb:11 ModuleMethod#call_instance()",
    "cme_complex_labels.rb:21 Object#work_main()",
    "cme_complex_labels.rb:25 Object$singleton#<main>{block}()",
    "<internal:kernel>:168 Kernel#loop()",
    "cme_complex_labels.rb:24 Object$singleton#<main>()",
];

/// Ruby 4.0 shows a method of its own `<internal:...>` files at its caller's line, as it does a
/// C function (Kernel#loop here; 3.3 and 3.4 show `<internal:kernel>:...`).
const EXPECTED_4_0_0: &[&str] = &[
    "infinite_on_cpu.rb:8 Kernel#sleep(*)",
    "infinite_on_cpu.rb:8 Object#aaa()",
    "infinite_on_cpu.rb:12 Object#bbb()",
    "infinite_on_cpu.rb:16 Object#ccc()",
    "infinite_on_cpu.rb:20 Object$singleton#<main>{block}()",
    "infinite_on_cpu.rb:19 Kernel#loop()",
    "infinite_on_cpu.rb:19 Object$singleton#<main>()",
];

#[test]
fn ruby_3_1_0() {
    let s = stacks(
        rbspy_testdata::coredump_3_1_0(),
        "3.1.0",
        0x7f0dc0c83c58,
        0x7f0dc0c75e80,
    );
    assert!(s.notes.is_empty(), "{:?}", s.notes);
    assert_eq!(frames(&s), EXPECTED_3_1_0);
    let t = &s.threads[0];
    assert_eq!((t.tid, t.status), (Some(41319), "sleeping"));
}

#[test]
fn ruby_3_2_0_recorded_on_arm64() {
    // This dump comes from an arm64 machine, where locks are larger: the thread list sits at
    // other offsets than the x86-64 layouts say. The main thread is still found, and the note
    // says that only it is shown.
    let s = stacks(
        rbspy_testdata::coredump_3_2_0(),
        "3.2.0",
        0xffffb8034578,
        0xffffb8025340,
    );
    assert_eq!(s.notes.len(), 1);
    assert!(s.notes[0].contains("main thread only"), "{:?}", s.notes);
    assert_eq!(
        frames(&s),
        EXPECTED_3_1_0,
        "the same program as the 3.1.0 dump"
    );
}

#[test]
fn ruby_3_3_0_with_classes() {
    let s = stacks(
        rbspy_testdata::coredump_with_classes_3_3_0(),
        "3.3.0",
        0x7f58cb7f4988,
        0x7f58cb7e3c60,
    );
    assert_eq!(frames(&s), EXPECTED_3_3_0);
}

#[test]
fn ruby_3_4_5_every_kind_of_frame() {
    let s = stacks(
        rbspy_testdata::coredump_complex_3_4_5(),
        "3.4.5",
        0x7f271feb5390,
        0x7f271fea3dc0,
    );
    assert_eq!(frames(&s), EXPECTED_3_4_5);
}

#[test]
fn ruby_4_0_0() {
    let s = stacks(
        rbspy_testdata::coredump_4_0_0(),
        "4.0.0",
        0x7fa56b875738,
        0x7fa56b862b50,
    );
    assert_eq!(frames(&s), EXPECTED_4_0_0);
}

#[test]
fn without_the_symbol_table_c_functions_are_unnamed_and_says_so() {
    let mem = Dump(rbspy_testdata::coredump_4_0_0());
    let target = Target::known("4.0.0", 0x7fa56b875738, None).unwrap();
    let o = Objects::new(&mem, target.layout, None);
    let s = stacks::read_all(&o, target.vm(&mem).unwrap(), ReadOptions::default(), &|| {}).unwrap();
    assert!(s.notes[0].contains("symbol table was not found"));
    let labels: Vec<&str> = s.threads[0]
        .frames
        .iter()
        .map(|f| f.label.as_str())
        .collect();
    assert_eq!(labels[0], "Kernel#<cfunc>(*)");
    assert_eq!(labels[1], "Object#aaa(*)");
}

#[test]
fn a_wrong_vm_address_is_an_error_not_a_crash() {
    let mem = Dump(rbspy_testdata::coredump_3_3_0());
    // Pointing at the 3.1.0 dump's address: not mapped in this dump.
    let target = Target::known("3.3.0", 0x7f0dc0c83c58, None).unwrap();
    assert!(target.vm(&mem).is_err());
    // A mapped address that is not the VM pointer: whatever it reads must fail cleanly.
    let target = Target::known("3.3.0", 0x7f43435e3c60, None).unwrap();
    if let Ok(vm) = target.vm(&mem) {
        let o = Objects::new(&mem, target.layout, None);
        let _ = stacks::read_all(&o, vm, ReadOptions::default(), &|| {});
    }
}
