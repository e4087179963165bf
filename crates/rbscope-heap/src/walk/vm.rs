//! What the bits of a Ruby object's header mean, and the names the dump gives the VM's
//! numbers, release by release (3.1 to 4.0).
//!
//! Why here: the agent reads an object's header word from the VM, but which bit says
//! "embedded", "shared" or "chilled" moved between releases, and so did the lists of IMEMO and
//! shape types. Those are facts of Ruby's headers, not calls into Ruby, so they live where unit
//! tests pin each release's answer; the agent checks at compile time that the numbers agree
//! with the headers it is built against (`ffi/heap.rs`).

use crate::parse::ObjType;

/// The Ruby release whose heap is walked: it decides header bits and the dump's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Release {
    R3_1,
    R3_2,
    R3_3,
    R3_4,
    R4_0,
}

/// The type bits of the header word (`RUBY_T_MASK`).
pub const T_MASK: u64 = 0x1f;
/// `RUBY_FL_USHIFT`: where the type-specific user flags start.
pub const FL_USHIFT: u32 = 12;
/// `RUBY_FL_FREEZE`.
pub const FL_FREEZE: u64 = 1 << 11;

/// `RUBY_FL_USER<n>`.
pub const fn fl_user(n: u32) -> u64 {
    1 << (FL_USHIFT + n)
}

/// STR_NOEMBED.
pub const STR_NOEMBED: u64 = fl_user(1);
/// RSTRING_FSTR.
pub const RSTRING_FSTR: u64 = fl_user(17);
/// STR_CHILLED (3.4+: STR_CHILLED_LITERAL | STR_CHILLED_SYMBOL_TO_S).
pub const STR_CHILLED: u64 = fl_user(2) | fl_user(3);
/// RARRAY_EMBED_FLAG.
pub const RARRAY_EMBED_FLAG: u64 = fl_user(1);
/// RHASH_PROC_DEFAULT.
pub const RHASH_PROC_DEFAULT: u64 = fl_user(2);
/// ROBJECT_EMBED (3.3, 3.4).
pub const ROBJECT_EMBED: u64 = fl_user(1);
/// ROBJECT_HEAP (4.0: set when the fields are not in the slot).
pub const ROBJECT_HEAP: u64 = fl_user(4);
/// ENC_CODERANGE_MASK and its values (also what `rb_enc_str_coderange` returns).
pub const CR_MASK: u64 = fl_user(8) | fl_user(9);
pub const CR_7BIT: u64 = fl_user(8);
pub const CR_VALID: u64 = fl_user(9);
pub const CR_BROKEN: u64 = CR_MASK;

/// `imemo_fields` (4.0): the IMEMO that holds a class's or a generic object's fields.
pub const IMEMO_FIELDS: usize = 13;

/// 4.0's shape_id_t: the low 19 bits index the shape list (SHAPE_ID_OFFSET_MASK); bit 27 is
/// SHAPE_ID_FL_TOO_COMPLEX.
pub const SHAPE_ID_OFFSET_MASK: u32 = (1 << 19) - 1;
pub const SHAPE_ID_FL_TOO_COMPLEX: u32 = 1 << (19 + 3 + 5);

impl Release {
    /// Whether this release is `other` or a later one.
    #[inline(always)]
    pub const fn at_least(self, other: Release) -> bool {
        self as u8 >= other as u8
    }

    /// ELTS_SHARED = STR_SHARED = RARRAY_SHARED_FLAG: FL_USER2 up to 3.3, FL_USER0 since 3.4.
    #[inline(always)]
    pub const fn elts_shared(self) -> u64 {
        if self.at_least(Release::R3_4) {
            fl_user(0)
        } else {
            fl_user(2)
        }
    }

    /// RUBY_FL_SINGLETON: FL_USER0 up to 3.3, FL_USER1 since 3.4.
    #[inline(always)]
    pub const fn fl_singleton(self) -> u64 {
        if self.at_least(Release::R3_4) {
            fl_user(1)
        } else {
            fl_user(0)
        }
    }

    /// RUBY_Qundef (the special constants were renumbered in 3.2).
    #[inline(always)]
    pub const fn undef(self) -> u64 {
        if self.at_least(Release::R3_2) {
            0x24
        } else {
            0x34
        }
    }

    /// `imemo_type` names in the order of `enum imemo_type` (internal/imemo.h).
    pub const fn imemo_types(self) -> &'static [&'static str] {
        if self.at_least(Release::R4_0) {
            IMEMO_TYPES_4_0
        } else {
            IMEMO_TYPES_3_1
        }
    }

    /// The name the dump gives IMEMO type `n` (`imemo_<n>` for a number this list lacks).
    #[inline]
    pub fn imemo_name(self, n: usize) -> &'static str {
        self.imemo_types()
            .get(n)
            .copied()
            .filter(|s| !s.is_empty())
            .or(IMEMO_NUMBERED.get(n).copied())
            .unwrap_or("imemo")
    }

    /// The name Ruby's dump gives a shape type (`enum shape_type` of shape.h); none on 3.1.
    pub fn shape_type_name(self, t: u8) -> Option<&'static str> {
        let names: &[&str] = match self {
            Release::R3_1 => &[],
            Release::R3_2 => &[
                "ROOT",
                "IVAR",
                "FROZEN",
                "CAPACITY_CHANGE",
                "INITIAL_CAPACITY",
                "T_OBJECT",
                "OBJ_TOO_COMPLEX",
            ],
            Release::R3_3 | Release::R3_4 => {
                &["ROOT", "IVAR", "FROZEN", "T_OBJECT", "OBJ_TOO_COMPLEX"]
            }
            Release::R4_0 => &["ROOT", "IVAR", "OBJ_ID"],
        };
        names.get(t as usize).copied()
    }
}

/// The same from 3.1 to 3.4.
const IMEMO_TYPES_3_1: &[&str] = &[
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

/// 4.0 dropped `ast` (9 is unused) and `parser_strterm`, and added `fields` (class and
/// generic instance variables).
const IMEMO_TYPES_4_0: &[&str] = &[
    "env",
    "cref",
    "svar",
    "throw_data",
    "ifunc",
    "memo",
    "ment",
    "iseq",
    "tmpbuf",
    "",
    "callinfo",
    "callcache",
    "constcache",
    "fields",
];

/// The names written for IMEMO types a release's list does not name.
const IMEMO_NUMBERED: [&str; 16] = [
    "imemo_0", "imemo_1", "imemo_2", "imemo_3", "imemo_4", "imemo_5", "imemo_6", "imemo_7",
    "imemo_8", "imemo_9", "imemo_10", "imemo_11", "imemo_12", "imemo_13", "imemo_14", "imemo_15",
];

/// The VM's type numbers (`enum ruby_value_type`, the same from 3.1 to 4.0) that a heap slot
/// can hold, with the dump's names. Other numbers are `Unknown`.
pub const VM_TYPES: [(u32, ObjType); 21] = [
    (0x00, ObjType::None),
    (0x01, ObjType::Object),
    (0x02, ObjType::Class),
    (0x03, ObjType::Module),
    (0x04, ObjType::Float),
    (0x05, ObjType::String),
    (0x06, ObjType::Regexp),
    (0x07, ObjType::Array),
    (0x08, ObjType::Hash),
    (0x09, ObjType::Struct),
    (0x0a, ObjType::Bignum),
    (0x0b, ObjType::File),
    (0x0c, ObjType::Data),
    (0x0d, ObjType::Match),
    (0x0e, ObjType::Complex),
    (0x0f, ObjType::Rational),
    (0x14, ObjType::Symbol),
    (0x1a, ObjType::Imemo),
    (0x1c, ObjType::IClass),
    (0x1d, ObjType::Zombie),
    (0x1e, ObjType::Moved),
];

/// [`VM_TYPES`] indexed by number.
const BY_NUMBER: [ObjType; 32] = {
    let mut table = [ObjType::Unknown; 32];
    let mut i = 0;
    while i < VM_TYPES.len() {
        let (n, ty) = VM_TYPES[i];
        table[n as usize] = ty;
        i += 1;
    }
    table
};

/// The dump's type for a VM type number.
#[inline(always)]
pub fn obj_type(t: u32) -> ObjType {
    BY_NUMBER
        .get(t as usize)
        .copied()
        .unwrap_or(ObjType::Unknown)
}

/// The census's name of a VM type number (`T_STRING`).
pub fn type_name(t: u32) -> String {
    format!("T_{}", obj_type(t).name())
}

/// The facts a header word gives, for one release.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub flags: u64,
    pub release: Release,
}

impl Header {
    #[inline(always)]
    pub fn type_number(self) -> u32 {
        (self.flags & T_MASK) as u32
    }

    #[inline(always)]
    pub fn frozen(self) -> bool {
        self.flags & FL_FREEZE != 0
    }

    /// An IMEMO's type (its four user bits).
    #[inline(always)]
    pub fn imemo_type(self) -> usize {
        ((self.flags >> FL_USHIFT) & 0x0f) as usize
    }

    /// A String's bytes are in its slot.
    #[inline(always)]
    pub fn string_embedded(self) -> bool {
        self.flags & STR_NOEMBED == 0
    }

    /// A heap String that shares another's buffer.
    #[inline(always)]
    pub fn string_shared(self) -> bool {
        !self.string_embedded() && self.flags & self.release.elts_shared() != 0
    }

    #[inline(always)]
    pub fn fstring(self) -> bool {
        self.flags & RSTRING_FSTR != 0
    }

    /// 3.4+: a chilled string literal.
    #[inline(always)]
    pub fn chilled(self) -> bool {
        self.release.at_least(Release::R3_4) && self.flags & STR_CHILLED != 0
    }

    /// The cached coderange bits (0 when unknown).
    #[inline(always)]
    pub fn coderange(self) -> u64 {
        self.flags & CR_MASK
    }

    /// The dump's name of the cached coderange (3.2+).
    #[inline(always)]
    pub fn coderange_name(self) -> Option<&'static str> {
        self.release
            .at_least(Release::R3_2)
            .then(|| match self.coderange() {
                0 => "unknown",
                CR_7BIT => "7bit",
                CR_VALID => "valid",
                _ => "broken",
            })
    }

    #[inline(always)]
    pub fn array_embedded(self) -> bool {
        self.flags & RARRAY_EMBED_FLAG != 0
    }

    #[inline(always)]
    pub fn array_shared(self) -> bool {
        self.flags & self.release.elts_shared() != 0
    }

    /// The Hash has a default proc.
    #[inline(always)]
    pub fn hash_proc_default(self) -> bool {
        self.flags & RHASH_PROC_DEFAULT != 0
    }

    /// What the dump calls an OBJECT's `embedded`: ROBJECT_EMBED in 3.3 and 3.4, the absence of
    /// ROBJECT_HEAP in 4.0; never written before 3.3.
    #[inline(always)]
    pub fn object_embedded(self) -> bool {
        match self.release {
            Release::R3_1 | Release::R3_2 => false,
            Release::R3_3 | Release::R3_4 => self.flags & ROBJECT_EMBED != 0,
            Release::R4_0 => self.flags & ROBJECT_HEAP == 0,
        }
    }

    /// FL_SINGLETON, which the dump writes as a class's `singleton` up to 3.4.
    #[inline(always)]
    pub fn singleton_flag(self) -> bool {
        self.flags & self.release.fl_singleton() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Release; 5] = [
        Release::R3_1,
        Release::R3_2,
        Release::R3_3,
        Release::R3_4,
        Release::R4_0,
    ];

    fn header(release: Release, flags: u64) -> Header {
        Header { flags, release }
    }

    #[test]
    fn types_by_number_as_the_dump_names_them() {
        assert_eq!(obj_type(0x05), ObjType::String);
        assert_eq!(obj_type(0x14), ObjType::Symbol);
        assert_eq!(obj_type(0x1a), ObjType::Imemo);
        assert_eq!(obj_type(0x1e), ObjType::Moved);
        // Special constants and unused numbers never name a heap object.
        for t in [0x11, 0x12, 0x13, 0x15, 0x16, 0x1b, 0x1f, 40] {
            assert_eq!(obj_type(t), ObjType::Unknown, "{t:#x}");
        }
        assert_eq!(type_name(0x07), "T_ARRAY");
        assert_eq!(type_name(0x10), "T_UNKNOWN");
        let flags = 0x05 | FL_FREEZE | STR_NOEMBED;
        let h = header(Release::R3_3, flags);
        assert_eq!(h.type_number(), 5);
        assert!(h.frozen());
        assert!(!h.string_embedded());
    }

    #[test]
    fn the_shared_bit_moved_in_3_4() {
        for r in ALL {
            let user2 = header(r, STR_NOEMBED | fl_user(2));
            let user0 = header(r, STR_NOEMBED | fl_user(0));
            let new = r.at_least(Release::R3_4);
            assert_eq!(user2.string_shared(), !new, "{r:?}");
            assert_eq!(user0.string_shared(), new, "{r:?}");
            assert_eq!(user2.array_shared(), !new, "{r:?}");
            // An embedded string is never shared, whatever the bit.
            assert!(!header(r, r.elts_shared()).string_shared());
        }
    }

    #[test]
    fn chilled_strings_from_3_4_and_coderanges_from_3_2() {
        for r in ALL {
            let h = header(r, fl_user(3));
            assert_eq!(h.chilled(), r.at_least(Release::R3_4), "{r:?}");
        }
        assert_eq!(header(Release::R3_1, CR_7BIT).coderange_name(), None);
        let names: Vec<_> = [0, CR_7BIT, CR_VALID, CR_BROKEN]
            .iter()
            .map(|cr| header(Release::R3_2, *cr).coderange_name())
            .collect();
        assert_eq!(
            names,
            [Some("unknown"), Some("7bit"), Some("valid"), Some("broken")]
        );
    }

    #[test]
    fn object_embedded_by_release() {
        let embed = ROBJECT_EMBED;
        let heap = ROBJECT_HEAP;
        let got: Vec<_> = ALL
            .iter()
            .map(|r| {
                (
                    header(*r, embed).object_embedded(),
                    header(*r, heap).object_embedded(),
                )
            })
            .collect();
        // 3.3 and 3.4: the EMBED bit; 4.0: not HEAP (the EMBED bit means nothing there).
        assert_eq!(
            got,
            [
                (false, false),
                (false, false),
                (true, false),
                (true, false),
                (true, false)
            ]
        );
        assert!(header(Release::R4_0, 0).object_embedded());
    }

    #[test]
    fn singleton_and_undef_by_release() {
        assert!(header(Release::R3_3, fl_user(0)).singleton_flag());
        assert!(!header(Release::R3_3, fl_user(1)).singleton_flag());
        assert!(header(Release::R3_4, fl_user(1)).singleton_flag());
        assert!(!header(Release::R3_4, fl_user(0)).singleton_flag());
        assert_eq!(Release::R3_1.undef(), 0x34);
        assert_eq!(Release::R4_0.undef(), 0x24);
    }

    #[test]
    fn imemo_and_shape_names_by_release() {
        assert_eq!(Release::R3_1.imemo_name(11), "callinfo");
        assert_eq!(Release::R4_0.imemo_name(11), "callcache");
        assert_eq!(Release::R3_4.imemo_name(9), "ast");
        assert_eq!(Release::R4_0.imemo_name(9), "imemo_9");
        assert_eq!(Release::R4_0.imemo_name(IMEMO_FIELDS), "fields");
        assert_eq!(Release::R3_4.imemo_name(15), "imemo_15");
        assert_eq!(Release::R3_4.imemo_name(99), "imemo");
        assert_eq!(Release::R3_1.shape_type_name(0), None);
        assert_eq!(Release::R3_2.shape_type_name(4), Some("INITIAL_CAPACITY"));
        assert_eq!(Release::R3_3.shape_type_name(3), Some("T_OBJECT"));
        assert_eq!(Release::R4_0.shape_type_name(2), Some("OBJ_ID"));
        assert_eq!(Release::R4_0.shape_type_name(3), None);
        assert!(Release::R3_3.at_least(Release::R3_2));
        assert!(!Release::R3_3.at_least(Release::R3_4));
    }

    #[test]
    fn imemo_types_and_other_header_bits() {
        let h = header(Release::R3_3, 0x1a | (12 << FL_USHIFT));
        assert_eq!(h.imemo_type(), 12);
        assert_eq!(Release::R3_3.imemo_name(h.imemo_type()), "callcache");
        assert!(header(Release::R3_1, RARRAY_EMBED_FLAG).array_embedded());
        assert!(header(Release::R3_1, RHASH_PROC_DEFAULT).hash_proc_default());
        assert!(header(Release::R3_1, RSTRING_FSTR).fstring());
        assert!(!header(Release::R3_1, 0).fstring());
    }
}
