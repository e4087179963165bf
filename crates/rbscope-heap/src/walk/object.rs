//! One object's line, from the facts the VM gives, field by field as the `dump_object` of
//! ext/objspace of each release writes it.
//!
//! Why a module of its own: this is where the releases differ most (which objects have a
//! class or a shape id, when a string's text is written, which IMEMOs say more), and it is the
//! hot path of the dump: it formats into the output buffer without allocating, and reads only
//! the facts the object's type needs.

use super::vm::{Header, Release, CR_7BIT, CR_BROKEN, IMEMO_FIELDS, SHAPE_ID_OFFSET_MASK};
use super::{id_name, State, Vm, MAX_FLAGS};
use crate::parse::ObjType;
use crate::write::{self, FlagValue, IdName, Kind, ObjectLine};

/// Writes the line of the object in slot `v`, whose flags word is `flags`, in a page of
/// `stride`-byte slots. Free (`NONE`) and moved slots write nothing.
///
/// # Safety
/// The contract of [`Vm`]: `v` is a live slot of a page the VM handed out.
#[inline]
pub(super) unsafe fn write<V: Vm>(vm: &V, st: &mut State<'_>, v: u64, flags: u64, stride: u64) {
    let release = V::RELEASE;
    let h = Header { flags, release };
    let ty = super::vm::obj_type(h.type_number());
    if ty == ObjType::None || ty == ObjType::Moved {
        return;
    }
    let imemo_type = h.imemo_type();
    // Ruby's cur_obj_klass: none for IMEMOs from 3.2 on, but 4.0's fields objects; 3.1 takes an
    // IMEMO's class word like any object's (whatever it holds: a callcache's class, nil...),
    // writes it and leaves it out of the references.
    let imemo_has_class = match release {
        Release::R3_1 => true,
        Release::R3_2 | Release::R3_3 | Release::R3_4 => false,
        Release::R4_0 => imemo_type == IMEMO_FIELDS,
    };
    let klass = if ty == ObjType::Imemo && !imemo_has_class {
        0
    } else {
        // SAFETY: `v` is a live object, per the caller; every object starts with RBasic.
        unsafe { vm.class_of(v) }
    };
    // Every object's shape id on 3.2 to 3.4; on 4.0 every object's but IMEMOs' (fields objects
    // excepted), without the flag bits.
    let has_shape = match release {
        Release::R3_1 => false,
        Release::R3_2 | Release::R3_3 | Release::R3_4 => true,
        Release::R4_0 => ty != ObjType::Imemo || imemo_has_class,
    };
    // SAFETY: `v` is a live object (3.2+, which has shapes), per the caller.
    let shape_id = has_shape.then(|| unsafe { vm.shape_id(v) });
    let shape_id = shape_id.map(|id| match release {
        Release::R4_0 => (id & SHAPE_ID_OFFSET_MASK) as u64,
        _ => id as u64,
    });
    // SAFETY: `v` is a live object of type `ty` whose header is `h`, per the caller.
    let kind = unsafe { kind(vm, st, v, ty, klass, h) };
    st.refs.list.clear();
    st.refs.klass = klass;
    if ty != ObjType::Zombie {
        // SAFETY: `v` is a live object, per the caller; the VM pushes into `st.refs` only.
        unsafe { vm.references(v, &mut st.refs) };
    }
    // SAFETY: `v` is a live object, per the caller (the lookup takes any object).
    let allocation = unsafe { vm.allocation(v) };
    let mut raw = [(0, FlagValue::True); MAX_FLAGS];
    // SAFETY: `v` is a live object, per the caller.
    let n = unsafe { vm.gc_flags(v, &mut raw) };
    let mut flags_out: [(&str, FlagValue); MAX_FLAGS] = [("", FlagValue::True); MAX_FLAGS];
    for (slot, (id, value)) in flags_out.iter_mut().zip(raw.iter().take(n)) {
        // SAFETY: `id` is a flag ID the VM just gave.
        *slot = (unsafe { st.flag_name(vm, *id) }, *value);
    }
    let line = ObjectLine {
        address: v,
        ty,
        shape_id,
        // 3.2+: the slot size is the page's stride.
        slot_size: release.at_least(Release::R3_2).then_some(stride),
        class: (klass != 0).then_some(klass),
        frozen: h.frozen(),
        kind,
        references: &st.refs.list,
        allocation,
        // SAFETY: `v` is a live object, per the caller.
        memsize: unsafe { vm.memsize(v) },
        flags: flags_out.get(..n).unwrap_or(&[]),
    };
    write::write_object(st.out.buf(), &line);
    st.written.objects += 1;
}

/// The fields of an object's type.
///
/// # Safety
/// The contract of [`Vm`]; `v` is a live object of type `ty` and class `klass`, whose header
/// is `h`.
#[inline(always)]
unsafe fn kind<'a, V: Vm>(
    vm: &V,
    st: &mut State<'_>,
    v: u64,
    ty: ObjType,
    klass: u64,
    h: Header,
) -> Kind<'a> {
    // SAFETY: `v` is a live object of type `ty`, per the caller, and each arm asks the VM only
    // what it offers for that type.
    unsafe {
        match ty {
            ObjType::String => string(vm, st, v, h),
            ObjType::Symbol => symbol(vm, v),
            ObjType::Array => {
                let length = vm.array_len(v);
                Kind::Array {
                    length,
                    // Ruby 3.1 says so for non-empty arrays only.
                    embedded: h.array_embedded()
                        && (length > 0 || h.release.at_least(Release::R3_2)),
                    shared: h.array_shared() && length > 0,
                }
            }
            ObjType::Hash => Kind::Hash {
                size: vm.hash_size(v),
                default: h.hash_proc_default().then(|| vm.hash_ifnone(v)),
            },
            ObjType::Object => {
                let (ivars, too_complex) = vm.object_ivars(v, h.flags);
                Kind::Object {
                    embedded: h.object_embedded(),
                    ivars,
                    too_complex,
                }
            }
            ObjType::Class | ObjType::Module => class(vm, v, ty, klass, h),
            ObjType::IClass => {
                let sup = vm.superclass(v);
                Kind::IClass {
                    superclass: (sup != 0).then_some(sup),
                }
            }
            ObjType::Data => Kind::Data {
                struct_name: vm.data_type_name(v),
            },
            // Every release writes `%#g`.
            ObjType::Float => Kind::Float {
                value: vm.float_value(v),
                alternate: true,
            },
            ObjType::File => match vm.file_fd(v) {
                Some(fd) => Kind::File { fd },
                None => Kind::Plain,
            },
            ObjType::Imemo => imemo(vm, v, h.imemo_type()),
            ObjType::Zombie => Kind::Zombie,
            _ => Kind::Plain,
        }
    }
}

/// A String's fields.
///
/// # Safety
/// The contract of [`Vm`]; `v` is a live String whose header is `h`.
#[inline]
unsafe fn string<'a, V: Vm>(vm: &V, st: &mut State<'_>, v: u64, h: Header) -> Kind<'a> {
    // SAFETY: `v` is a live String, per the caller.
    let enc = unsafe { vm.encoding(v) };
    // SAFETY: `enc` is the handle the VM just gave.
    let encoding = unsafe { st.encoding_name(vm, enc) };
    // 3.1 asks for the coderange (computed, and cached in the string, when unknown): it
    // decides `value` and `broken`.
    let scanned = if h.release.at_least(Release::R3_2) {
        0
    } else {
        // SAFETY: `v` is a live String, per the caller.
        unsafe { vm.coderange_scan(v) }
    };
    // SAFETY: `v` is a live String of header `h` and encoding `enc`.
    let (bytesize, capacity, value) = unsafe { content(vm, v, h, enc, scanned) };
    Kind::String {
        embedded: h.string_embedded(),
        fstring: h.fstring(),
        chilled: h.chilled(),
        shared: h.string_shared(),
        bytesize,
        capacity,
        value,
        encoding,
        coderange: h.coderange_name(),
        broken: !h.release.at_least(Release::R3_2) && scanned == CR_BROKEN,
    }
}

/// A string's `bytesize`, `capacity` and `value` as Ruby's dump decides them: the capacity of
/// heap strings that own their buffer, when it differs from the length; the text of 7-bit
/// strings (3.1: by the scanned coderange `scanned`; 3.2+: non-empty, of an ASCII-compatible
/// encoding, with a cached 7-bit coderange, or an unknown one and 7-bit bytes, nothing cached).
///
/// # Safety
/// The contract of [`Vm`]; `s` is a live String whose header is `h` and encoding `enc`.
#[inline]
unsafe fn content<'a, V: Vm>(
    vm: &V,
    s: u64,
    h: Header,
    enc: usize,
    scanned: u64,
) -> (u64, Option<u64>, Option<&'a [u8]>) {
    // SAFETY: `s` is a live String, per the caller.
    let bytes: &'a [u8] = unsafe { vm.string(s) };
    let len = bytes.len() as u64;
    let capacity = if h.string_embedded() || h.string_shared() {
        None
    } else {
        // SAFETY: as above.
        let capa = unsafe { vm.string_capacity(s) };
        (capa != len).then_some(capa)
    };
    let value = if h.release.at_least(Release::R3_2) {
        let cr = h.coderange();
        let seven_bit = cr == CR_7BIT || (cr == 0 && bytes.iter().all(|b| *b < 0x80));
        // SAFETY: a handle the VM gave for `s` (not 0).
        let ascii_compat = enc != 0 && unsafe { vm.ascii_compatible(enc) };
        (len > 0 && ascii_compat && seven_bit).then_some(bytes)
    } else {
        (scanned == CR_7BIT).then_some(bytes)
    };
    (len, capacity, value)
}

/// A Symbol's fields: its name's length and text (3.2+ writes it like a string's content;
/// 3.1 the length and the name).
///
/// # Safety
/// The contract of [`Vm`]; `v` is a live Symbol.
#[inline]
unsafe fn symbol<'a, V: Vm>(vm: &V, v: u64) -> Kind<'a> {
    // SAFETY: `v` is a live Symbol, per the caller.
    let Some(s) = (unsafe { vm.symbol_string(v) }) else {
        return Kind::Symbol {
            bytesize: 0,
            capacity: None,
            value: None,
        };
    };
    let (bytesize, capacity, value) = if V::RELEASE.at_least(Release::R3_2) {
        // SAFETY: `s` is the Symbol's name, a live String (which starts with its flags), and
        // its header and encoding are read from it.
        unsafe {
            let h = Header {
                flags: vm.slot_flags(s),
                release: V::RELEASE,
            };
            content(vm, s, h, vm.encoding(s), 0)
        }
    } else {
        // SAFETY: `s` is the Symbol's name, a live String.
        let b: &'a [u8] = unsafe { vm.string(s) };
        (b.len() as u64, None, Some(b))
    };
    Kind::Symbol {
        bytesize,
        capacity,
        value,
    }
}

/// A class's or module's fields. Ruby names it (and says whether it is a singleton) only when
/// it has a class of its own.
///
/// # Safety
/// The contract of [`Vm`]; `v` is a live class or module of class `klass`.
#[inline]
unsafe fn class<'a, V: Vm>(vm: &V, v: u64, ty: ObjType, klass: u64, h: Header) -> Kind<'a> {
    let release = V::RELEASE;
    let variation_count = (ty == ObjType::Class && release.at_least(Release::R3_2))
        // SAFETY: `v` is a live class, per the caller.
        .then(|| unsafe { vm.variation_count(v) });
    // SAFETY: `v` is a live class or module, per the caller.
    let sup = unsafe { vm.superclass(v) };
    let (mut name, mut real_class_name, mut singleton) = (None, None, false);
    if klass != 0 {
        // SAFETY: as above.
        name = unsafe { vm.module_name(v) };
        if name.is_none() {
            // SAFETY: as above.
            real_class_name = unsafe { vm.real_class_name(v) };
        }
        // FL_SINGLETON up to 3.3, and on classes only in 3.4 (RCLASS_SINGLETON_P); 4.0 asks
        // rb_class_singleton_p.
        singleton = match release {
            Release::R3_1 | Release::R3_2 | Release::R3_3 => h.singleton_flag(),
            Release::R3_4 => h.singleton_flag() && ty == ObjType::Class,
            // SAFETY: as above.
            Release::R4_0 => unsafe { vm.singleton(v) },
        };
    }
    Kind::Class {
        variation_count,
        name,
        real_class_name,
        singleton,
        superclass: (sup != 0).then_some(sup),
    }
}

/// An IMEMO's fields: its type's name; from 3.3 on a callinfo's method name and a
/// callcache's cached method name and receiver class.
///
/// # Safety
/// The contract of [`Vm`]; `v` is a live IMEMO of type `n`.
#[inline]
unsafe fn imemo<'a, V: Vm>(vm: &V, v: u64, n: usize) -> Kind<'a> {
    let release = V::RELEASE;
    let name = release.imemo_name(n);
    let (mut mid, mut called_id, mut receiver_class) = (None, None, None);
    if release.at_least(Release::R3_3) {
        if name == "callinfo" {
            // SAFETY: `v` is a live callinfo, per the caller.
            let id = unsafe { vm.callinfo_mid(v) };
            if id != 0 {
                // SAFETY: the method ID the VM just gave.
                mid = Some(unsafe { id_name(vm, id) });
            }
        } else if name == "callcache" {
            // SAFETY: `v` is a live callcache, per the caller.
            let klass = unsafe { vm.callcache_class(v) };
            // Called only when the release says the cache's method entry is there (below).
            let called = || -> Option<IdName<'a>> {
                // SAFETY: `v` is a live callcache with a class, so its entry is valid.
                let id = unsafe { vm.callcache_called_id(v) };
                // SAFETY: the method ID the VM just gave.
                (id != 0).then(|| unsafe { id_name(vm, id) })
            };
            // 3.3: the receiver class only with a method name; 3.4: both only for a cache
            // with a class; 4.0: the class is Qundef once collected.
            match release {
                Release::R3_3 => {
                    called_id = called();
                    if called_id.is_some() && klass != 0 {
                        receiver_class = Some(klass);
                    }
                }
                _ => {
                    let has_class = if release == Release::R3_4 {
                        klass != 0
                    } else {
                        klass != release.undef()
                    };
                    if has_class {
                        called_id = called();
                        receiver_class = Some(klass);
                    }
                }
            }
        }
    }
    Kind::Imemo {
        imemo_type: name,
        mid,
        called_id,
        receiver_class,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{dispatch, FakeVm, Obj};
    use super::super::out::Sink;
    use super::super::vm::{self, fl_user, Release, CR_VALID};
    use super::super::{Vm, Walker};
    use crate::write::FlagValue;

    fn page<V: Vm>(vm: V) -> String {
        let mut sink = Vec::new();
        let mut w = Walker::new(vm, Sink::Direct(&mut sink), false);
        // SAFETY: the fake VM answers for any address.
        unsafe { w.page(0x1000, 0x1028, 40) };
        w.finish().unwrap();
        String::from_utf8(sink).unwrap()
    }

    /// The line the walk writes for the one object of `vm` at 0x1000 (40-byte slots).
    fn line(vm: FakeVm) -> String {
        dispatch!(vm, page)
    }

    fn one(release: Release, obj: Obj) -> String {
        let mut vm = FakeVm::new(release);
        vm.add(0x1000, obj);
        line(vm)
    }

    const OLD: [(&str, FlagValue<'static>); 2] =
        [("wb_protected", FlagValue::True), ("old", FlagValue::True)];

    #[test]
    fn a_string_as_the_real_3_1_dump_writes_it() {
        // From tests/fixtures/ruby-3.1.2.json.gz (addresses made small).
        let mut s = Obj::string(b"Gem::UnknownCommandError");
        s.flags |= vm::FL_FREEZE | vm::RSTRING_FSTR | vm::STR_NOEMBED;
        s.capacity = 47;
        s.coderange_scan = vm::CR_7BIT;
        s.encoding = Some("US-ASCII");
        s.class = 0x40;
        s.memsize = 88;
        s.flags_out = OLD.to_vec();
        assert_eq!(
            one(Release::R3_1, s),
            "{\"address\":\"0x1000\", \"type\":\"STRING\", \"class\":\"0x40\", \"frozen\":true, \"fstring\":true, \"bytesize\":24, \"capacity\":47, \"value\":\"Gem::UnknownCommandError\", \"encoding\":\"US-ASCII\", \"memsize\":88, \"flags\":{\"wb_protected\":true, \"old\":true}}\n"
        );
    }

    #[test]
    fn a_string_as_the_real_3_4_dump_writes_it() {
        // From tests/fixtures/ruby-3.4.1.json.gz.
        let mut s = Obj::string(b"filter!");
        s.flags |= vm::FL_FREEZE | vm::RSTRING_FSTR | vm::CR_7BIT;
        s.shape_id = 1;
        s.encoding = Some("US-ASCII");
        s.class = 0x40;
        s.memsize = 40;
        s.flags_out = vec![("wb_protected", FlagValue::True)];
        assert_eq!(
            one(Release::R3_4, s),
            "{\"address\":\"0x1000\", \"type\":\"STRING\", \"shape_id\":1, \"slot_size\":40, \"class\":\"0x40\", \"frozen\":true, \"embedded\":true, \"fstring\":true, \"bytesize\":7, \"value\":\"filter!\", \"encoding\":\"US-ASCII\", \"coderange\":\"7bit\", \"memsize\":40, \"flags\":{\"wb_protected\":true}}\n"
        );
    }

    #[test]
    fn when_a_string_s_text_is_written() {
        let with = |release, f: &dyn Fn(&mut Obj)| {
            let mut s = Obj::string(b"abc");
            s.encoding = Some("UTF-8");
            f(&mut s);
            one(release, s).contains("\"value\":\"abc\"")
        };
        // 3.1: by the coderange it scans.
        assert!(with(Release::R3_1, &|s| s.coderange_scan = vm::CR_7BIT));
        assert!(!with(Release::R3_1, &|s| s.coderange_scan = CR_VALID));
        // 3.2+: a cached 7-bit coderange, or an unknown one and 7-bit bytes...
        assert!(with(Release::R3_2, &|s| s.flags |= vm::CR_7BIT));
        assert!(with(Release::R3_3, &|_| ()));
        assert!(!with(Release::R3_3, &|s| s.flags |= CR_VALID));
        // ...of an ASCII-compatible encoding only (UTF-16 is not).
        assert!(with(Release::R4_0, &|_| ()));
        assert!(!with(Release::R4_0, &|s| s.encoding = Some("UTF-16LE")));
        let mut s = Obj::string("é".as_bytes());
        s.encoding = Some("UTF-8");
        assert!(!one(Release::R3_3, s).contains("value"));
        let empty = Obj::string(b"");
        assert!(one(Release::R3_1, {
            let mut e = empty.clone();
            e.coderange_scan = vm::CR_7BIT;
            e
        })
        .contains("\"bytesize\":0, \"value\":\"\""));
        assert!(!one(Release::R3_2, empty).contains("value"));
    }

    #[test]
    fn string_flags_by_release() {
        let mut s = Obj::string(b"x");
        s.flags |= vm::STR_NOEMBED | fl_user(2) | fl_user(0);
        s.capacity = 1;
        s.encoding = Some("ASCII-8BIT");
        // 3.3: FL_USER2 is `shared` (no content then); 3.4: FL_USER0 is, FL_USER2 is chilled.
        let l33 = one(Release::R3_3, s.clone());
        assert!(
            l33.contains("\"shared\":true, \"coderange\":\"unknown\""),
            "{l33}"
        );
        assert!(!l33.contains("chilled"));
        let l34 = one(Release::R3_4, s.clone());
        assert!(
            l34.contains("\"chilled\":true, \"shared\":true, \"coderange\":\"unknown\""),
            "{l34}"
        );
        // ASCII-8BIT is never named.
        assert!(!l34.contains("encoding"));
        // 3.1 says `broken` (from its scan) right after `embedded`; 3.2+ after the coderange.
        let mut b = Obj::string(b"\xff");
        b.coderange_scan = vm::CR_BROKEN;
        assert!(one(Release::R3_1, b.clone())
            .contains("\"embedded\":true, \"broken\":true, \"bytesize\":1"));
        b.flags |= vm::CR_BROKEN;
        assert!(one(Release::R3_2, b).contains("\"coderange\":\"broken\", \"broken\":true"));
    }

    #[test]
    fn symbols_write_their_name_like_a_string_from_3_2() {
        let mut vm31 = FakeVm::new(Release::R3_1);
        vm31.add(0x1000, Obj::symbol(0x2000));
        vm31.add(0x2000, Obj::string("é".as_bytes()));
        assert!(line(vm31).contains("\"type\":\"SYMBOL\", \"bytesize\":2, \"value\":\"é\""));
        let mut vm33 = FakeVm::new(Release::R3_3);
        vm33.add(0x1000, Obj::symbol(0x2000));
        let mut name = Obj::string(b"ok");
        name.flags |= vm::CR_7BIT;
        name.encoding = Some("US-ASCII");
        vm33.add(0x2000, name);
        let l = line(vm33);
        assert!(l.contains("\"type\":\"SYMBOL\", \"shape_id\":0, \"slot_size\":40, \"bytesize\":2, \"value\":\"ok\", \"memsize\""), "{l}");
        // Without an encoding a 3.2+ symbol's name is not written (3.1 writes it anyway).
        let mut vm = FakeVm::new(Release::R3_2);
        vm.add(0x1000, Obj::symbol(0x2000));
        vm.add(0x2000, Obj::string(b"ok"));
        assert!(line(vm).contains("\"bytesize\":2, \"memsize\""));
        let mut vm = FakeVm::new(Release::R3_3);
        vm.add(0x1000, Obj::symbol(0));
        assert!(line(vm).contains("\"bytesize\":0, \"memsize\""));
    }

    #[test]
    fn arrays_hashes_and_objects_by_release() {
        let empty = || Obj::with_type(0x07 | vm::RARRAY_EMBED_FLAG);
        // 3.1 says `embedded` for non-empty arrays only.
        assert!(!one(Release::R3_1, empty()).contains("embedded"));
        assert!(one(Release::R3_2, empty()).contains("\"length\":0, \"embedded\":true"));
        let mut shared = Obj::with_type(0x07 | fl_user(0));
        shared.len = 3;
        assert!(one(Release::R3_4, shared.clone()).contains("\"length\":3, \"shared\":true"));
        assert!(!one(Release::R3_3, shared).contains("shared"));

        let mut h = Obj::with_type(0x08 | vm::RHASH_PROC_DEFAULT);
        h.len = 2;
        h.ifnone = 0x3000;
        assert!(one(Release::R3_1, h).contains("\"size\":2, \"default\":\"0x3000\""));

        let mut o = Obj::with_type(0x01 | vm::ROBJECT_EMBED);
        o.ivars = (3, false);
        o.refs = vec![0x10, 0x40, 0x18];
        o.class = 0x40;
        // The class is not repeated in the references.
        let l = one(Release::R3_3, o.clone());
        assert!(l.contains("\"class\":\"0x40\", \"embedded\":true, \"ivars\":3, \"references\":[\"0x10\", \"0x18\"]"), "{l}");
        assert!(!one(Release::R3_2, o.clone()).contains("embedded"));
        // 4.0: embedded unless ROBJECT_HEAP.
        assert!(one(Release::R4_0, o.clone()).contains("embedded"));
        o.flags = 0x01 | vm::ROBJECT_HEAP;
        assert!(!one(Release::R4_0, o.clone()).contains("embedded"));
        o.flags = 0x01;
        o.ivars = (9, true);
        assert!(one(Release::R4_0, o)
            .contains("\"embedded\":true, \"ivars\":9, \"too_complex_shape\":true"));
    }

    #[test]
    fn classes_by_release() {
        let class = |flags: u64| {
            let mut c = Obj::with_type(flags);
            c.class = 0x50;
            c.superclass = 0x60;
            c.variation = 2;
            c.name = Some(b"Shop::Order");
            c
        };
        assert!(one(Release::R3_1, class(0x02)).contains(
            "\"class\":\"0x50\", \"superclass\":\"0x60\", \"name\":\"Shop::Order\", \"memsize\""
        ));
        assert!(one(Release::R3_2, class(0x02))
            .contains("\"variation_count\":2, \"superclass\":\"0x60\", \"name\":\"Shop::Order\""));
        // Modules have no variation count.
        assert!(!one(Release::R3_2, class(0x03)).contains("variation"));
        // FL_SINGLETON moved; 3.4 says `singleton` of classes only; 4.0 asks the VM.
        assert!(one(Release::R3_3, class(0x03 | fl_user(0))).contains("\"singleton\":true"));
        assert!(!one(Release::R3_4, class(0x03 | fl_user(1))).contains("singleton"));
        assert!(one(Release::R3_4, class(0x02 | fl_user(1))).contains("\"singleton\":true"));
        assert!(!one(Release::R4_0, class(0x02 | fl_user(1))).contains("singleton"));
        let mut asked = class(0x02);
        asked.singleton = true;
        assert!(one(Release::R4_0, asked).contains("\"singleton\":true"));
        // Anonymous: the real class's name; no class of its own: no name at all.
        let mut anon = class(0x02);
        anon.name = None;
        anon.real_name = Some(b"Object");
        assert!(one(Release::R3_3, anon.clone()).contains("\"real_class_name\":\"Object\""));
        anon.class = 0;
        let l = one(Release::R3_3, anon);
        assert!(!l.contains("name") && !l.contains("\"class\""), "{l}");
    }

    #[test]
    fn imemos_by_release() {
        let imemo = |n: u64, class: u64| {
            let mut o = Obj::with_type(0x1a | (n << vm::FL_USHIFT));
            o.class = class;
            o.shape_id = 5 | vm::SHAPE_ID_FL_TOO_COMPLEX;
            o
        };
        // 3.1 writes an IMEMO's class word; 3.2 to 3.4 do not; 4.0 for fields objects only,
        // with their shape id (without its flag bits).
        assert!(one(Release::R3_1, imemo(12, 0x70))
            .contains("\"type\":\"IMEMO\", \"class\":\"0x70\", \"imemo_type\":\"callcache\""));
        let l = one(Release::R3_2, imemo(5, 0x70));
        assert!(l.contains("\"type\":\"IMEMO\", \"shape_id\":134217733, \"slot_size\":40, \"imemo_type\":\"memo\""), "{l}");
        assert!(one(Release::R4_0, imemo(5, 0x70))
            .contains("\"type\":\"IMEMO\", \"slot_size\":40, \"imemo_type\":\"memo\""));
        assert!(one(Release::R4_0, imemo(13, 0x70)).contains(
            "\"type\":\"IMEMO\", \"shape_id\":5, \"slot_size\":40, \"class\":\"0x70\", \"imemo_type\":\"fields\""
        ));
        // 3.3+: a callinfo's method name.
        let mut vm = FakeVm::new(Release::R3_3);
        let mut ci = imemo(11, 0);
        ci.mid = 0x1a2;
        vm.add(0x1000, ci);
        vm.ids.insert(0x1a2, b"ship!");
        assert!(line(vm).contains("\"imemo_type\":\"callinfo\", \"mid\":\"ship!\""));
        assert!(!one(Release::R3_2, imemo(11, 0)).contains("mid"));
    }

    #[test]
    fn callcaches_by_release() {
        let cache = |release, klass: u64, called: u64| {
            let mut vm = FakeVm::new(release);
            // `callcache` is IMEMO type 12 up to 3.4, 11 in 4.0.
            let n = if release == Release::R4_0 { 11 } else { 12 };
            let mut cc = Obj::with_type(0x1a | (n << vm::FL_USHIFT));
            cc.cc_class = klass;
            cc.called_id = called;
            vm.ids.insert(0x1a2, b"inherited");
            vm.add(0x1000, cc);
            let l = line(vm);
            let field = |k: &str| l.contains(&format!("\"{k}\""));
            (field("called_id"), field("receiver_class"))
        };
        // 3.3: the receiver class only with a method name.
        assert_eq!(cache(Release::R3_3, 0x80, 0x1a2), (true, true));
        assert_eq!(cache(Release::R3_3, 0x80, 0), (false, false));
        assert_eq!(cache(Release::R3_3, 0, 0x1a2), (true, false));
        // 3.4: both only for a cache with a class (and the entry is then not read).
        assert_eq!(cache(Release::R3_4, 0, 0x1a2), (false, false));
        assert_eq!(cache(Release::R3_4, 0x80, 0), (false, true));
        // 4.0: the class is Qundef once collected.
        assert_eq!(cache(Release::R4_0, 0, 0x1a2), (true, true));
        assert_eq!(cache(Release::R4_0, 0x24, 0x1a2), (false, false));
        assert_eq!(cache(Release::R3_2, 0x80, 0x1a2), (false, false));
        let l = {
            let mut vm = FakeVm::new(Release::R3_4);
            let mut cc = Obj::with_type(0x1a | (12 << vm::FL_USHIFT));
            cc.cc_class = 0x80;
            cc.called_id = 0x1a2;
            vm.ids.insert(0x1a2, b"inherited");
            vm.add(0x1000, cc);
            line(vm)
        };
        // From tests/fixtures/ruby-3.4.1.json.gz.
        assert!(l.contains("\"imemo_type\":\"callcache\", \"called_id\":\"inherited\", \"receiver_class\":\"0x80\", \"memsize\""), "{l}");
    }

    #[test]
    fn other_types_zombies_and_skipped_slots() {
        let mut d = Obj::with_type(0x0c);
        d.name = Some(b"proc");
        assert!(one(Release::R3_1, d).contains("\"type\":\"DATA\", \"struct\":\"proc\""));
        let mut f = Obj::with_type(0x04);
        f.float = 2.5;
        assert!(one(Release::R3_1, f).contains("\"type\":\"FLOAT\", \"value\":\"2.50000\""));
        let mut io = Obj::with_type(0x0b);
        assert!(!one(Release::R3_1, io.clone()).contains("fd"));
        io.fd = Some(7);
        assert!(one(Release::R3_1, io).contains("\"type\":\"FILE\", \"fd\":7"));
        let mut i = Obj::with_type(0x1c);
        i.superclass = 0x90;
        assert!(one(Release::R3_1, i).contains("\"type\":\"ICLASS\", \"superclass\":\"0x90\""));
        let mut z = Obj::with_type(0x1d);
        z.refs = vec![0x10];
        z.class = 0x40;
        assert_eq!(
            one(Release::R3_3, z),
            "{\"address\":\"0x1000\", \"type\":\"ZOMBIE\", \"shape_id\":0, \"slot_size\":40, \"class\":\"0x40\"}\n"
        );
        assert_eq!(one(Release::R3_3, Obj::with_type(0x1e)), "");
        assert_eq!(one(Release::R3_3, Obj::with_type(vm::FL_FREEZE)), "");
        assert!(
            one(Release::R3_3, Obj::with_type(0x0d)).contains("\"type\":\"MATCH\", \"shape_id\"")
        );
    }

    #[test]
    fn allocation_and_flags() {
        let mut o = Obj::with_type(0x01);
        o.allocated = Some((b"/srv/app.rb", 12, b"new", 4));
        o.flags_out = vec![
            ("wb_protected", FlagValue::True),
            ("age", FlagValue::Int(3)),
            ("old", FlagValue::True),
        ];
        o.memsize = 40;
        let l = one(Release::R4_0, o);
        assert!(l.ends_with("\"file\":\"/srv/app.rb\", \"line\":12, \"method\":\"new\", \"generation\":4, \"memsize\":40, \"flags\":{\"wb_protected\":true, \"age\":3, \"old\":true}}\n"), "{l}");
    }
}
