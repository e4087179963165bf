//! A core file's memory (`gcore PID`, or the kernel's core dump).
//!
//! A core file is an ELF file whose `PT_LOAD` segments are the process's memory at the time of
//! the dump. Read-only mappings of files (the code and constant data of `ruby` and `libruby`)
//! are often left out to save space; the `NT_FILE` note still lists them, so reads there fall
//! back to the mapped file on this machine, when it is the same file. Which files could be read
//! that way is kept, so a caller can tell the user what was missing.
//!
//! The core file and those program files are mapped, not read into memory: a core is as big as
//! the process was, and a read of the stacks touches only the pages it needs.

use crate::memory::{word_at, Memory, ReadError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a 64-bit little-endian ELF core file")]
    NotCore(PathBuf),
    #[error("{path} is truncated or damaged: {what}")]
    Damaged { path: PathBuf, what: String },
}

#[derive(Debug, Clone)]
struct Segment {
    vaddr: usize,
    filesz: usize,
    offset: usize,
}

/// One file mapping from the `NT_FILE` note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMapping {
    pub start: usize,
    pub end: usize,
    /// Offset in the file, in bytes.
    pub offset: usize,
    pub path: String,
}

pub struct CoreMemory {
    path: PathBuf,
    data: Bytes,
    segments: Vec<Segment>,
    files: Vec<FileMapping>,
    /// Local replacements for mapped files (`--ruby BIN` for the program's path).
    substitutes: HashMap<String, PathBuf>,
    loaded: RefCell<HashMap<String, Option<std::rc::Rc<Bytes>>>>,
}

/// A file's bytes: mapped (a file opened from disk) or owned (given by a test).
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// Maps `path` read-only. An empty file is given as no bytes (it cannot be mapped).
fn map(path: &Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::Owned(Vec::new()));
    }
    // SAFETY: the mapping is private and read-only, and its bytes are only read through bounds-
    // checked slices. A core file or program file is not expected to change while it is read;
    // were one truncated meanwhile, a read past its new end would end this command with SIGBUS
    // (this is the CLI, never the app's process).
    let m = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Bytes::Mapped(m))
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const ET_CORE: u16 = 4;
const NT_FILE: u32 = 0x4649_4c45;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?) as usize)
}

impl CoreMemory {
    pub fn open(path: &Path) -> Result<CoreMemory, CoreError> {
        let data = map(path).map_err(|source| CoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        CoreMemory::parse(path, data)
    }

    pub fn from_bytes(path: &Path, data: Vec<u8>) -> Result<CoreMemory, CoreError> {
        CoreMemory::parse(path, Bytes::Owned(data))
    }

    fn parse(path: &Path, data: Bytes) -> Result<CoreMemory, CoreError> {
        let not_core = || CoreError::NotCore(path.to_path_buf());
        let damaged = |what: &str| CoreError::Damaged {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        if data.get(0..4) != Some(b"\x7fELF") || data.get(4) != Some(&2) || data.get(5) != Some(&1)
        {
            return Err(not_core());
        }
        if u16_at(&data, 16) != Some(ET_CORE) {
            return Err(not_core());
        }
        let phoff = u64_at(&data, 0x20).ok_or_else(|| damaged("no program headers"))?;
        let phentsize = u16_at(&data, 0x36).ok_or_else(|| damaged("header"))? as usize;
        let phnum = u16_at(&data, 0x38).ok_or_else(|| damaged("header"))? as usize;
        let mut segments = Vec::new();
        let mut files = Vec::new();
        for i in 0..phnum {
            let ph = phoff + i * phentsize;
            let kind = u32_at(&data, ph).ok_or_else(|| damaged("program headers"))?;
            let offset = u64_at(&data, ph + 8).ok_or_else(|| damaged("program headers"))?;
            let vaddr = u64_at(&data, ph + 16).ok_or_else(|| damaged("program headers"))?;
            let filesz = u64_at(&data, ph + 32).ok_or_else(|| damaged("program headers"))?;
            match kind {
                PT_LOAD if filesz > 0 => {
                    // A segment cut short by a truncated file keeps what is there.
                    let have = data.len().saturating_sub(offset).min(filesz);
                    segments.push(Segment {
                        vaddr,
                        filesz: have,
                        offset,
                    });
                }
                PT_NOTE => {
                    let end = offset.saturating_add(filesz).min(data.len());
                    files.extend(parse_file_note(data.get(offset..end).unwrap_or(&[])));
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(damaged("it holds no memory segments"));
        }
        segments.sort_by_key(|s| s.vaddr);
        Ok(CoreMemory {
            path: path.to_path_buf(),
            data,
            segments,
            files,
            substitutes: HashMap::new(),
            loaded: RefCell::new(HashMap::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The files the process had mapped, from the `NT_FILE` note.
    pub fn file_mappings(&self) -> &[FileMapping] {
        &self.files
    }

    /// Reads `mapped` (a path in the dumped process) from `local` instead.
    pub fn substitute(&mut self, mapped: &str, local: PathBuf) {
        self.substitutes.insert(mapped.to_string(), local);
    }

    fn segment_bytes(&self, addr: usize, len: usize) -> Option<&[u8]> {
        let i = self.segments.partition_point(|s| s.vaddr <= addr);
        let s = self.segments.get(i.checked_sub(1)?)?;
        let rel = addr - s.vaddr;
        if rel.checked_add(len)? > s.filesz {
            return None;
        }
        self.data.get(s.offset + rel..s.offset + rel + len)
    }

    fn file_bytes(&self, addr: usize, buf: &mut [u8]) -> bool {
        let Some(m) = self
            .files
            .iter()
            .find(|m| m.start <= addr && addr + buf.len() <= m.end)
        else {
            return false;
        };
        let mut loaded = self.loaded.borrow_mut();
        let content = loaded.entry(m.path.clone()).or_insert_with(|| {
            let local = self
                .substitutes
                .get(&m.path)
                .cloned()
                .unwrap_or_else(|| PathBuf::from(&m.path));
            map(&local).ok().map(std::rc::Rc::new)
        });
        let Some(content) = content else {
            return false;
        };
        let at = m.offset + (addr - m.start);
        match content.get(at..at + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// Parses the notes of a `PT_NOTE` segment, keeping the `NT_FILE` mappings.
fn parse_file_note(notes: &[u8]) -> Vec<FileMapping> {
    let mut out = Vec::new();
    let mut at = 0;
    let align4 = |n: usize| (n + 3) & !3;
    while let (Some(namesz), Some(descsz), Some(kind)) = (
        u32_at(notes, at),
        u32_at(notes, at + 4),
        u32_at(notes, at + 8),
    ) {
        let desc = at + 12 + align4(namesz as usize);
        let next = desc + align4(descsz as usize);
        if kind == NT_FILE {
            if let Some(d) = notes.get(desc..desc + descsz as usize) {
                out = parse_nt_file(d);
            }
        }
        if next <= at || next > notes.len() {
            break;
        }
        at = next;
    }
    out
}

fn parse_nt_file(d: &[u8]) -> Vec<FileMapping> {
    let (Some(count), Some(page)) = (u64_at(d, 0), u64_at(d, 8)) else {
        return Vec::new();
    };
    let count = count.min(d.len() / 24);
    let mut names = d.get(16 + count * 24..).unwrap_or(&[]).split(|&b| b == 0);
    (0..count)
        .filter_map(|i| {
            let e = 16 + i * 24;
            let name = names.next()?;
            Some(FileMapping {
                start: u64_at(d, e)?,
                end: u64_at(d, e + 8)?,
                offset: u64_at(d, e + 16)?.checked_mul(page)?,
                path: String::from_utf8_lossy(name).into_owned(),
            })
        })
        .collect()
}

impl Memory for CoreMemory {
    fn read_word(&self, addr: usize) -> Result<usize, ReadError> {
        if let Some(b) = self.segment_bytes(addr, 8) {
            return word_at(b, 0).ok_or(ReadError::Unreadable(addr));
        }
        let mut w = [0u8; 8];
        self.read_bytes(addr, &mut w)?;
        Ok(usize::from_ne_bytes(w))
    }

    fn read_bytes(&self, addr: usize, buf: &mut [u8]) -> Result<(), ReadError> {
        if addr == 0 {
            return Err(ReadError::Unreadable(addr));
        }
        if let Some(b) = self.segment_bytes(addr, buf.len()) {
            buf.copy_from_slice(b);
            return Ok(());
        }
        if self.file_bytes(addr, buf) {
            return Ok(());
        }
        Err(ReadError::Unreadable(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_non_core_files_are_refused() {
        let p = Path::new("x");
        assert!(matches!(
            CoreMemory::from_bytes(p, b"hello".to_vec()),
            Err(CoreError::NotCore(_))
        ));
        // An ELF executable header (type 2) is not a core.
        let mut exe = vec![0u8; 64];
        exe[..6].copy_from_slice(b"\x7fELF\x02\x01");
        exe[16] = 2;
        assert!(matches!(
            CoreMemory::from_bytes(p, exe.clone()),
            Err(CoreError::NotCore(_))
        ));
        // A core header with program headers pointing past the end.
        exe[16] = 4;
        exe[0x20] = 200;
        exe[0x36] = 56;
        exe[0x38] = 3;
        assert!(matches!(
            CoreMemory::from_bytes(p, exe),
            Err(CoreError::Damaged { .. })
        ));
    }

    #[test]
    fn file_note_lists_mappings_with_byte_offsets() {
        let mut d = Vec::new();
        for v in [1u64, 4096, 0x1000, 0x3000, 2] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(b"/usr/lib/libruby.so.3.1\0");
        let maps = parse_nt_file(&d);
        assert_eq!(
            maps,
            vec![FileMapping {
                start: 0x1000,
                end: 0x3000,
                offset: 0x2000,
                path: "/usr/lib/libruby.so.3.1".into()
            }]
        );
    }
}
