//! Walking the VM's heap and writing it in `ObjectSpace.dump_all`'s format.
//!
//! Used in two places: the child forked for `rbscope heap dump` (the normal case: the app is
//! paused only for the fork) and, when asked, the process itself. The walk is the VM's own
//! (`rb_objspace_each_objects`, `rb_objspace_reachable_objects_from(_root)`, the functions
//! ext/objspace uses); the facts of each object are read with the VM's exported functions and
//! formatted by `rbscope_heap::write`. Nothing here allocates Ruby objects while the walk runs
//! (GC is disabled around it anyway), and the output is plain bytes written to a file
//! descriptor, so neither the app's IO buffers nor its Ruby code are involved.
//!
//! The census (`rbscope heap count`) walks the same way but only counts.

use rb_sys::{ruby_value_type as T, ID, VALUE};
use rbscope_heap::parse::ObjType;
use rbscope_heap::write::{self, Allocation, Kind, ObjectLine};
use rustc_hash::FxHashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::Write;

type EachPage = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, *mut c_void) -> c_int;
type EachRef = unsafe extern "C" fn(VALUE, *mut c_void);
type EachRoot = unsafe extern "C" fn(*const c_char, VALUE, *mut c_void);

extern "C" {
    // Exported by libruby for ext/objspace; no public header declares them.
    fn rb_objspace_each_objects(cb: EachPage, data: *mut c_void);
    fn rb_objspace_reachable_objects_from(obj: VALUE, cb: EachRef, data: *mut c_void);
    fn rb_objspace_reachable_objects_from_root(cb: EachRoot, data: *mut c_void);
    fn rb_objspace_internal_object_p(obj: VALUE) -> c_int;
    fn rb_objspace_data_type_name(obj: VALUE) -> *const c_char;
    fn rb_obj_memsize_of(obj: VALUE) -> usize;
    #[cfg(not(ruby_gte_4_0))]
    fn rb_obj_gc_flags(obj: VALUE, flags: *mut ID, max: usize) -> usize;
    /// 4.0 replaced rb_obj_gc_flags: entries of (name, value), ended by a zero name, in a
    /// static buffer the next call overwrites.
    #[cfg(ruby_gte_4_0)]
    fn rb_gc_object_metadata(obj: VALUE) -> *const MetadataEntry;
    #[cfg(ruby_gte_3_2)]
    fn rb_ivar_count(obj: VALUE) -> usize;
    fn rb_class_get_superclass(klass: VALUE) -> VALUE;
    fn rb_str_capacity(str: VALUE) -> usize;
}

/// `struct rb_gc_object_metadata_entry` of Ruby 4.0's internal/gc.h.
#[cfg(ruby_gte_4_0)]
#[repr(C)]
struct MetadataEntry {
    name: ID,
    value: VALUE,
}

/// The IDs of the GC flags set on `obj` (at most `ids.len()`), and how many there are.
///
/// # Safety
/// GVL held (or in the forked child, alone); `obj` is a live heap object.
unsafe fn gc_flags(obj: VALUE, ids: &mut [ID; 8]) -> usize {
    #[cfg(not(ruby_gte_4_0))]
    {
        // SAFETY: fills at most 8 IDs of the flags set on obj (caller's contract for obj).
        unsafe { rb_obj_gc_flags(obj, ids.as_mut_ptr(), ids.len()) }.min(ids.len())
    }
    #[cfg(ruby_gte_4_0)]
    {
        // SAFETY: the entries are a static array ended by a zero name (gc/default/default.c).
        let entries = unsafe { rb_gc_object_metadata(obj) };
        let mut n = 0;
        let mut i = 0;
        while n < ids.len() && !entries.is_null() {
            // SAFETY: i never passes the terminating entry.
            let e = unsafe { &*entries.add(i) };
            if e.name == 0 {
                break;
            }
            if e.value == crate::rb::TRUE {
                ids[n] = e.name;
                n += 1;
            }
            i += 1;
        }
        n
    }
}

/// `struct allocation_info` of ext/objspace/objspace.h (the same from Ruby 2.1 to 4.0).
#[repr(C)]
struct AllocationInfo {
    living: c_int,
    flags: VALUE,
    klass: VALUE,
    path: *const c_char,
    line: std::ffi::c_ulong,
    class_path: *const c_char,
    mid: VALUE,
    generation: usize,
}

type LookupAllocation = unsafe extern "C" fn(VALUE) -> *const AllocationInfo;

/// objspace.so's lookup of an object's allocation info, when objspace is loaded.
fn allocation_lookup() -> Option<LookupAllocation> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks a symbol up.
    let sym = unsafe {
        libc::dlsym(
            libc::RTLD_DEFAULT,
            c"objspace_lookup_allocation_info".as_ptr(),
        )
    };
    if sym.is_null() {
        return None;
    }
    // SAFETY: the symbol is objspace.so's `struct allocation_info *(VALUE)` function.
    Some(unsafe { std::mem::transmute::<*mut c_void, LookupAllocation>(sym) })
}

/// Makes the VM create, now, the few things the walk would otherwise create on first use:
/// the IDs of the GC flag names (`rb_obj_gc_flags` interns them lazily). Called before the
/// fork, so that the child allocates nothing on the Ruby heap while it walks it. GVL held.
pub fn prepare() {
    let mut ids: [ID; 8] = [0; 8];
    // SAFETY: GVL held (caller); the current thread's object is a live heap object.
    unsafe { gc_flags(rb_sys::rb_thread_current(), &mut ids) };
}

/// Counts of a finished walk.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub objects: u64,
    pub roots: u64,
    pub allocation_info: bool,
}

/// The output: bytes are gathered into a buffer and written out in large pieces. On the same
/// thread on purpose: in the forked child, a new thread could be given (by glibc's stack
/// cache) the stack memory of one of the app's threads that did not survive the fork, where
/// Ruby keeps that thread's VM stack, which the walk still reads.
struct Out<'a> {
    sink: &'a mut dyn Write,
    buf: Vec<u8>,
    error: Option<std::io::Error>,
}

impl Out<'_> {
    const FLUSH_AT: usize = 4 << 20;

    fn maybe_flush(&mut self) {
        if self.buf.len() >= Self::FLUSH_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.sink.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    fn failed(&self) -> bool {
        self.error.is_some()
    }
}

struct Walk<'a> {
    out: Out<'a>,
    refs: Vec<u64>,
    lookup: Option<LookupAllocation>,
    flag_names: FxHashMap<ID, &'static str>,
    encodings: FxHashMap<usize, Option<&'static str>>,
    written: Written,
    /// 3.2+: the slot size is the page's stride.
    write_slot_size: bool,
    /// The class of the object being written.
    klass: u64,
}

/// Writes the whole heap, roots first, to `sink`. Must run with the GVL held (in the forked
/// child it is held by the only thread left).
pub fn dump(sink: &mut dyn Write) -> std::io::Result<Written> {
    let mut walk = Walk {
        out: Out {
            sink,
            buf: Vec::with_capacity(Out::FLUSH_AT + (1 << 20)),
            error: None,
        },
        refs: Vec::with_capacity(1024),
        lookup: allocation_lookup(),
        flag_names: FxHashMap::default(),
        encodings: FxHashMap::default(),
        written: Written::default(),
        write_slot_size: cfg!(ruby_gte_3_2),
        klass: 0,
    };
    walk.written.allocation_info = walk.lookup.is_some();
    // SAFETY: GVL held (caller); the walk allocates no Ruby objects, and GC stays off so the
    // heap does not change under it. The data pointer is `walk`, alive for both calls.
    unsafe {
        let was_disabled = rb_sys::rb_gc_disable() == rb_sys::Qtrue as VALUE;
        let data = &mut walk as *mut Walk as *mut c_void;
        let mut roots = Roots {
            current: None,
            refs: Vec::new(),
            walk: data as *mut Walk,
        };
        rb_objspace_reachable_objects_from_root(each_root, &mut roots as *mut Roots as *mut c_void);
        roots.finish();
        rb_objspace_each_objects(each_page, data);
        if !was_disabled {
            rb_sys::rb_gc_enable();
        }
    }
    walk.out.flush();
    match walk.out.error.take() {
        Some(e) => Err(e),
        None => Ok(walk.written),
    }
}

struct Roots {
    current: Option<*const c_char>,
    refs: Vec<u64>,
    walk: *mut Walk<'static>,
}

impl Roots {
    fn finish(&mut self) {
        let Some(cat) = self.current.take() else {
            return;
        };
        // SAFETY: `walk` points at the live Walk of `dump`; the category is a static C string
        // from gc.c.
        unsafe {
            let walk = &mut *self.walk;
            let name = CStr::from_ptr(cat).to_string_lossy();
            write::write_root(&mut walk.out.buf, &name, &self.refs);
            walk.written.roots += 1;
            walk.out.maybe_flush();
        }
        self.refs.clear();
    }
}

unsafe extern "C" fn each_root(category: *const c_char, obj: VALUE, data: *mut c_void) {
    // SAFETY: `data` is the Roots of `dump`, used only by this callback while it runs.
    let roots = unsafe { &mut *(data as *mut Roots) };
    if roots.current != Some(category) {
        roots.finish();
        roots.current = Some(category);
    }
    roots.refs.push(obj);
}

unsafe extern "C" fn collect_ref(obj: VALUE, data: *mut c_void) {
    // SAFETY: `data` is the Walk of `dump`, used only during this call.
    let walk = unsafe { &mut *(data as *mut Walk) };
    // The class is its own field, not a reference (as in Ruby's dump).
    if obj != walk.klass {
        walk.refs.push(obj);
    }
}

unsafe extern "C" fn each_page(
    start: *mut c_void,
    end: *mut c_void,
    stride: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the Walk of `dump`; the VM calls this on the same thread.
    let walk = unsafe { &mut *(data as *mut Walk) };
    let mut p = start as usize;
    while p < end as usize {
        let v = p as VALUE;
        // SAFETY: every slot of a heap page starts with its flags word; 0 means free.
        let flags = unsafe { *(p as *const VALUE) };
        if flags != 0 {
            // SAFETY: a live slot of the heap, GVL held, GC off.
            unsafe { walk.object(v, flags, stride) };
            walk.out.maybe_flush();
        }
        p += stride;
    }
    // Stop the walk once writing failed (disk full): nothing more can be kept.
    c_int::from(walk.out.failed())
}

/// The dump's name for a VM type.
fn obj_type(t: u32) -> ObjType {
    match t {
        x if x == T::RUBY_T_NONE as u32 => ObjType::None,
        x if x == T::RUBY_T_OBJECT as u32 => ObjType::Object,
        x if x == T::RUBY_T_CLASS as u32 => ObjType::Class,
        x if x == T::RUBY_T_MODULE as u32 => ObjType::Module,
        x if x == T::RUBY_T_FLOAT as u32 => ObjType::Float,
        x if x == T::RUBY_T_STRING as u32 => ObjType::String,
        x if x == T::RUBY_T_REGEXP as u32 => ObjType::Regexp,
        x if x == T::RUBY_T_ARRAY as u32 => ObjType::Array,
        x if x == T::RUBY_T_HASH as u32 => ObjType::Hash,
        x if x == T::RUBY_T_STRUCT as u32 => ObjType::Struct,
        x if x == T::RUBY_T_BIGNUM as u32 => ObjType::Bignum,
        x if x == T::RUBY_T_FILE as u32 => ObjType::File,
        x if x == T::RUBY_T_DATA as u32 => ObjType::Data,
        x if x == T::RUBY_T_MATCH as u32 => ObjType::Match,
        x if x == T::RUBY_T_COMPLEX as u32 => ObjType::Complex,
        x if x == T::RUBY_T_RATIONAL as u32 => ObjType::Rational,
        x if x == T::RUBY_T_SYMBOL as u32 => ObjType::Symbol,
        x if x == T::RUBY_T_IMEMO as u32 => ObjType::Imemo,
        x if x == T::RUBY_T_ICLASS as u32 => ObjType::IClass,
        x if x == T::RUBY_T_ZOMBIE as u32 => ObjType::Zombie,
        x if x == T::RUBY_T_MOVED as u32 => ObjType::Moved,
        _ => ObjType::Unknown,
    }
}

/// `imemo_type` names in the order of `enum imemo_type` (internal/imemo.h), Ruby 3.1 to 3.3.
#[cfg(not(ruby_gte_3_4))]
const IMEMO_TYPES: &[&str] = &[
    "env",
    "cref",
    "svar",
    "throw_data",
    "ifunc",
    "memo",
    "ment",
    "iseq",
    "tmpbuf",
    "ast",
    "parser_strterm",
    "callinfo",
    "callcache",
    "constcache",
];

/// Ruby 3.4 removed `ast` and `parser_strterm` (prism) and 3.5/4.0 added `fields`; rather
/// than guess an order this build cannot check, the number is written.
#[cfg(ruby_gte_3_4)]
const IMEMO_TYPES: &[&str] = &[];

/// The names written for imemo types this build does not know by name.
const IMEMO_NUMBERED: [&str; 16] = [
    "imemo_0", "imemo_1", "imemo_2", "imemo_3", "imemo_4", "imemo_5", "imemo_6", "imemo_7",
    "imemo_8", "imemo_9", "imemo_10", "imemo_11", "imemo_12", "imemo_13", "imemo_14", "imemo_15",
];

const FL_USHIFT: u32 = 12;

/// Header bits of strings and arrays that Ruby's dump reports: `STR_NOEMBED` /
/// `RARRAY_EMBED_FLAG` (FL_USER1), `STR_SHARED` / `ELTS_SHARED` (FL_USER2), `RSTRING_FSTR`
/// (FL_USER17); as in Ruby 3.1 to 3.3. Later Rubies moved some of them: there nothing is
/// claimed (and a shared string's text is written, which Ruby's dump leaves out).
struct StringBits {
    embedded: bool,
    shared: bool,
    fstring: bool,
}

impl StringBits {
    #[cfg(not(ruby_gte_3_4))]
    fn of(flags: VALUE) -> StringBits {
        let user = |n: u32| flags & (1 << (FL_USHIFT + n)) != 0;
        if flags & 0x1f == T::RUBY_T_STRING as VALUE {
            // NOEMBED set: not embedded. An embedded string keeps its length in FL_USER2..6,
            // so STR_SHARED means something only with NOEMBED (STR_SHARED_P).
            StringBits {
                embedded: !user(1),
                shared: user(1) && user(2),
                fstring: user(17),
            }
        } else {
            StringBits {
                embedded: user(1),
                shared: user(2),
                fstring: false,
            }
        }
    }

    #[cfg(ruby_gte_3_4)]
    fn of(_flags: VALUE) -> StringBits {
        StringBits {
            embedded: false,
            shared: false,
            fstring: false,
        }
    }
}

/// A C string's bytes, or None for NULL.
///
/// # Safety
/// `p` must be NULL or a NUL-terminated string that outlives the returned slice's use.
unsafe fn c_bytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    // SAFETY: per the caller.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_bytes())
}

impl Walk<'_> {
    /// Writes one object's line.
    ///
    /// # Safety
    /// `v` is a live heap slot, the GVL is held and GC is off.
    unsafe fn object(&mut self, v: VALUE, flags: VALUE, stride: usize) {
        let t = (flags & 0x1f) as u32;
        let ty = obj_type(t);
        if ty == ObjType::None || ty == ObjType::Moved {
            return;
        }
        let basic = v as *const rb_sys::RBasic;
        // SAFETY: every heap object starts with RBasic.
        let klass = unsafe { (*basic).klass };
        let frozen = flags & (rb_sys::ruby_fl_type::RUBY_FL_FREEZE as VALUE) != 0;
        let mut imemo_name: &'static str = "";
        let mut float_value = 0.0;
        let mut slices: [Option<&[u8]>; 2] = [None, None];
        // SAFETY (whole block): v is a live object of type `t`, read with the VM's own
        // accessors for that type; GVL held.
        let kind = unsafe {
            match ty {
                ObjType::String => {
                    let len = rb_sys::RSTRING_LEN(v) as u64;
                    // Like Ruby's dump: the text of 7-bit strings only (the coderange is
                    // computed, and cached in the string, when not known yet, as Ruby does).
                    let ascii = rb_sys::rb_enc_str_coderange(v) == 1 << (FL_USHIFT + 8);
                    let enc_name = self.encoding_name(rb_sys::rb_enc_get(v));
                    let bits = StringBits::of(flags);
                    let value =
                        ascii.then(|| std::slice::from_raw_parts(RSTRING_PTR_u8(v), len as usize));
                    Kind::String {
                        embedded: bits.embedded,
                        fstring: bits.fstring,
                        shared: bits.shared,
                        bytesize: len,
                        // As Ruby: only for a heap string with room to spare.
                        capacity: Some(rb_str_capacity(v) as u64)
                            .filter(|c| !bits.embedded && !bits.shared && *c != len),
                        value,
                        encoding: enc_name,
                    }
                }
                ObjType::Symbol => {
                    let s = rb_sys::rb_sym2str(v);
                    let (len, value) = if rb_sys::RB_TYPE(s) == T::RUBY_T_STRING {
                        let len = rb_sys::RSTRING_LEN(s) as usize;
                        (
                            len as u64,
                            Some(std::slice::from_raw_parts(RSTRING_PTR_u8(s), len)),
                        )
                    } else {
                        (0, None)
                    };
                    Kind::Symbol {
                        bytesize: len,
                        value,
                    }
                }
                ObjType::Array => {
                    let length = rb_sys::RARRAY_LEN(v) as u64;
                    let bits = StringBits::of(flags);
                    Kind::Array {
                        length,
                        // Ruby 3.1 says so for non-empty arrays only.
                        embedded: bits.embedded && (length > 0 || cfg!(ruby_gte_3_2)),
                        shared: bits.shared && length > 0,
                    }
                }
                ObjType::Hash => Kind::Hash {
                    size: rb_sys::rb_hash_size_num(v) as u64,
                },
                ObjType::Object => Kind::Object {
                    ivars: object_ivars(v, flags),
                },
                ObjType::Class | ObjType::Module => {
                    let singleton = flags & (rb_sys::ruby_fl_type::RUBY_FL_SINGLETON as VALUE) != 0;
                    let name = rb_sys::rb_mod_name(v);
                    if rb_sys::RB_TYPE(name) == T::RUBY_T_STRING {
                        slices[0] = Some(std::slice::from_raw_parts(
                            RSTRING_PTR_u8(name),
                            rb_sys::RSTRING_LEN(name) as usize,
                        ));
                    } else if ty == ObjType::Class {
                        let real = rb_sys::rb_class_real(v);
                        if real != 0 && real != v {
                            let rn = rb_sys::rb_mod_name(real);
                            if rb_sys::RB_TYPE(rn) == T::RUBY_T_STRING {
                                slices[1] = Some(std::slice::from_raw_parts(
                                    RSTRING_PTR_u8(rn),
                                    rb_sys::RSTRING_LEN(rn) as usize,
                                ));
                            }
                        }
                    }
                    let sup = if ty == ObjType::Class {
                        rb_class_get_superclass(v)
                    } else {
                        0
                    };
                    Kind::Class {
                        name: slices[0],
                        real_class_name: slices[1],
                        singleton,
                        superclass: (sup != 0 && sup != rb_sys::Qnil as VALUE)
                            .then_some(sup as u64),
                    }
                }
                ObjType::IClass => {
                    let sup = rb_class_get_superclass(v);
                    Kind::IClass {
                        superclass: (sup != 0 && sup != rb_sys::Qnil as VALUE)
                            .then_some(sup as u64),
                    }
                }
                ObjType::Data => Kind::Data {
                    struct_name: c_bytes(rb_objspace_data_type_name(v)),
                },
                ObjType::Float => {
                    float_value = rb_sys::rb_float_value(v);
                    Kind::Float { value: float_value }
                }
                ObjType::Imemo => {
                    let n = ((flags >> FL_USHIFT) & 0x0f) as usize;
                    imemo_name = IMEMO_TYPES
                        .get(n)
                        .or(IMEMO_NUMBERED.get(n))
                        .copied()
                        .unwrap_or("imemo");
                    Kind::Plain
                }
                _ => Kind::Plain,
            }
        };
        let kind = match ty {
            ObjType::Imemo => Kind::Imemo {
                imemo_type: imemo_name,
            },
            ObjType::Float => Kind::Float { value: float_value },
            _ => kind,
        };
        self.refs.clear();
        self.klass = klass;
        if ty != ObjType::Zombie {
            // SAFETY: v is live; the callback only pushes into `refs`.
            unsafe {
                rb_objspace_reachable_objects_from(v, collect_ref, self as *mut Walk as *mut c_void)
            };
        }
        let mut method_buf: Option<&[u8]> = None;
        let allocation = match self.lookup {
            // SAFETY: objspace's lookup takes any VALUE and returns its record or NULL.
            Some(lookup) => match unsafe { lookup(v) } {
                p if p.is_null() => None,
                p => {
                    // SAFETY: a live allocation_info record of objspace's table.
                    let info = unsafe { &*p };
                    // SAFETY: path is NULL or objspace's own NUL-terminated copy.
                    let file = unsafe { c_bytes(info.path) };
                    // `mid` is the method's Symbol (or nil).
                    // SAFETY: a Symbol's name is a String the VM keeps (its fstring).
                    if unsafe { rb_sys::RB_SYMBOL_P(info.mid) } {
                        method_buf = unsafe {
                            let name = rb_sys::rb_sym2str(info.mid);
                            (rb_sys::RB_TYPE(name) == T::RUBY_T_STRING).then(|| {
                                std::slice::from_raw_parts(
                                    RSTRING_PTR_u8(name),
                                    rb_sys::RSTRING_LEN(name) as usize,
                                )
                            })
                        };
                    }
                    Some(Allocation {
                        file,
                        line: file.map(|_| info.line),
                        method: method_buf,
                        generation: info.generation as u64,
                    })
                }
            },
            None => None,
        };
        let mut ids: [ID; 8] = [0; 8];
        // SAFETY: v is a live object of the page being walked.
        let n = unsafe { gc_flags(v, &mut ids) };
        let mut flag_names: [&str; 8] = [""; 8];
        for (i, id) in ids[..n].iter().enumerate() {
            flag_names[i] = self.flag_name(*id);
        }
        let class = match ty {
            // The class of an IMEMO is junk on 3.1 and not written since 3.2.
            ObjType::Imemo | ObjType::Zombie => None,
            _ => (klass != 0).then_some(klass),
        };
        let line = ObjectLine {
            address: v,
            ty,
            shape_id: None,
            slot_size: self.write_slot_size.then_some(stride as u64),
            class,
            frozen,
            kind,
            references: &self.refs,
            allocation,
            // SAFETY: v is live.
            memsize: unsafe { rb_obj_memsize_of(v) } as u64,
            flags: &flag_names[..n],
        };
        write::write_object(&mut self.out.buf, &line);
        self.written.objects += 1;
    }

    /// An encoding's name (left out for ASCII-8BIT, like Ruby), looked up once per encoding.
    ///
    /// # Safety
    /// `enc` is NULL or one of the VM's encodings, which live as long as the process.
    unsafe fn encoding_name(&mut self, enc: *mut rb_sys::rb_encoding) -> Option<&'static str> {
        if enc.is_null() {
            return None;
        }
        *self.encodings.entry(enc as usize).or_insert_with(|| {
            // SAFETY: per the caller; the name is a static C string of the encoding table.
            unsafe { c_bytes::<'static>((*enc).name as *const c_char) }
                .and_then(|n| std::str::from_utf8(n).ok())
                .filter(|n| *n != "ASCII-8BIT")
        })
    }

    fn flag_name(&mut self, id: ID) -> &'static str {
        self.flag_names.entry(id).or_insert_with(|| {
            // SAFETY: GVL held; the flags' IDs are static symbols with names.
            let name = unsafe { c_bytes(rb_sys::rb_id2name(id)) }
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Box::leak(name.into_boxed_str())
        })
    }
}

/// What Ruby's dump calls `ivars`: on 3.1 the instance variable table's capacity
/// (ROBJECT_NUMIV: 3 when embedded in the slot, else `as.heap.numiv`, the first field after
/// RBasic); from 3.2 on (shapes) the number of instance variables set.
///
/// # Safety
/// `v` is a live T_OBJECT.
unsafe fn object_ivars(v: VALUE, flags: VALUE) -> u64 {
    #[cfg(not(ruby_gte_3_2))]
    {
        let embedded = flags & (1 << (FL_USHIFT + 1)) != 0;
        if embedded {
            3
        } else {
            // SAFETY: a non-embedded RObject keeps `uint32_t numiv` right after RBasic.
            unsafe { *((v as usize + std::mem::size_of::<rb_sys::RBasic>()) as *const u32) as u64 }
        }
    }
    #[cfg(ruby_gte_3_2)]
    {
        let _ = flags;
        // SAFETY: per the caller.
        unsafe { rb_ivar_count(v) as u64 }
    }
}

/// RSTRING_PTR as bytes.
///
/// # Safety
/// `v` must be a live String.
#[allow(non_snake_case)]
unsafe fn RSTRING_PTR_u8(v: VALUE) -> *const u8 {
    // SAFETY: per the caller.
    unsafe { rb_sys::RSTRING_PTR(v) as *const u8 }
}

/// Live objects by VM type and by class, counted by walking the heap pages.
pub struct Census {
    pub objects: u64,
    pub by_type: FxHashMap<u32, u64>,
    pub by_class: FxHashMap<VALUE, u64>,
}

unsafe extern "C" fn count_page(
    start: *mut c_void,
    end: *mut c_void,
    stride: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the Census of `census`, on this thread.
    let c = unsafe { &mut *(data as *mut Census) };
    let mut p = start as usize;
    while p < end as usize {
        // SAFETY: a heap slot starts with its flags; 0 is a free slot.
        let flags = unsafe { *(p as *const VALUE) };
        if flags != 0 {
            let v = p as VALUE;
            *c.by_type.entry((flags & 0x1f) as u32).or_default() += 1;
            c.objects += 1;
            // SAFETY: v is live; internal objects (imemo, hidden) have no class to count.
            if unsafe { rb_objspace_internal_object_p(v) } == 0 {
                // SAFETY: every object starts with RBasic.
                let klass = unsafe { (*(v as *const rb_sys::RBasic)).klass };
                *c.by_class.entry(klass).or_default() += 1;
            }
        }
        p += stride;
    }
    0
}

/// Counts every live object and hands the counts to `use_it` while GC is still off: the
/// class VALUEs in the map are not GC roots, so they are only valid until GC runs again.
/// GVL held by the caller.
pub fn census<R>(use_it: impl FnOnce(&Census) -> R) -> R {
    let mut c = Census {
        objects: 0,
        by_type: FxHashMap::default(),
        by_class: FxHashMap::default(),
    };
    // SAFETY: GVL held by the caller; the callback only counts into `c`; GC is turned back on
    // (if it was on) only after `use_it` is done with the class VALUEs.
    unsafe {
        let was_disabled = rb_sys::rb_gc_disable() == rb_sys::Qtrue as VALUE;
        rb_objspace_each_objects(count_page, &mut c as *mut Census as *mut c_void);
        let r = use_it(&c);
        if !was_disabled {
            rb_sys::rb_gc_enable();
        }
        r
    }
}

/// The dump's type name for a VM type number (`T_STRING`).
pub fn type_name(t: u32) -> String {
    format!("T_{}", obj_type(t).name())
}
