//! Finding the Ruby VM in a process or a core file.
//!
//! From the process's mappings (`/proc/PID/maps`, or a core's `NT_FILE` note) we take the
//! file that defines `ruby_version` and `ruby_current_vm_ptr` (libruby, or the `ruby` binary
//! when Ruby is linked statically), read its ELF symbols, and add the load bias. The version
//! string picks the layout. The global symbol table (to name IDs: C functions, parameters,
//! class paths before 3.3) is the `ruby_global_symbols` symbol when the file has a full symbol
//! table; Debian's libruby exports only the public API, so otherwise the file's `.data` is
//! scanned for a structure that names `initialize` where Ruby's id.def puts it.

use crate::core_file::CoreMemory;
use crate::elf::ElfImage;
use crate::layout::Layout;
use crate::memory::{Memory, ReadError};
use crate::objects::Objects;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("no process with PID {0} (it may have exited)")]
    NoProcess(i32),
    #[error("process {pid} does not look like Ruby: none of its mapped files ({exe}) defines `ruby_version` and `ruby_current_vm_ptr`")]
    NotRuby { pid: i32, exe: String },
    #[error("Ruby {version} is not supported by this rbscope (it reads Ruby {known})")]
    Unsupported { version: String, known: String },
    #[error("{0}")]
    Denied(String),
    #[error("the Ruby VM is not set up yet (ruby_current_vm_ptr is empty); the process may still be starting, try again")]
    NoVm,
    #[error("{0}")]
    Core(String),
    #[error("reading the process failed: {0}")]
    Read(#[from] ReadError),
}

/// How the global symbol table was found, for `--verbose` output and honest messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolsFoundBy {
    Symbol,
    Scan,
    Given,
    NotFound,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub version: String,
    pub layout: &'static Layout,
    /// Address of `ruby_current_vm_ptr` (a pointer to the VM).
    pub vm_ptr: usize,
    pub global_symbols: Option<usize>,
    pub symbols_found_by: SymbolsFoundBy,
    /// The file the symbols came from, as the process maps it.
    pub library: String,
}

impl Target {
    /// A target whose addresses are already known (core dumps recorded with them).
    pub fn known(
        version: &str,
        vm_ptr: usize,
        global_symbols: Option<usize>,
    ) -> Result<Target, TargetError> {
        let layout = layout_for(version)?;
        Ok(Target {
            version: version.to_string(),
            layout,
            vm_ptr,
            global_symbols,
            symbols_found_by: if global_symbols.is_some() {
                SymbolsFoundBy::Given
            } else {
                SymbolsFoundBy::NotFound
            },
            library: String::new(),
        })
    }

    /// The VM itself.
    pub fn vm<M: Memory>(&self, mem: &M) -> Result<usize, TargetError> {
        match mem.read_word(self.vm_ptr)? {
            0 => Err(TargetError::NoVm),
            vm => Ok(vm),
        }
    }

    /// A live process, by PID.
    pub fn of_process<M: Memory>(pid: i32, mem: &M) -> Result<Target, TargetError> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::NotFound => TargetError::NoProcess(pid),
                std::io::ErrorKind::PermissionDenied => TargetError::Denied(format!(
                    "not permitted to read /proc/{pid}/maps: run rbscope as the process's user or as root"
                )),
                _ => TargetError::NoProcess(pid),
            }
        })?;
        let mappings: Vec<Mapping> = maps.lines().filter_map(parse_maps_line).collect();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".into());
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let open = |path: &str| -> Option<ElfImage> {
            // Read the file as the process sees it (it may be in a container).
            let inside = root.join(path.trim_start_matches('/'));
            ElfImage::read(&inside)
                .or_else(|_| ElfImage::read(Path::new(path)))
                .ok()
        };
        locate(&mappings, mem, open).ok_or(TargetError::NotRuby { pid, exe })?
    }

    /// A core file; `ruby_bin` is the program that dumped it, as it is on this machine.
    pub fn of_core(core: &mut CoreMemory, ruby_bin: &Path) -> Result<Target, TargetError> {
        let mappings: Vec<Mapping> = core
            .file_mappings()
            .iter()
            .map(|m| Mapping {
                start: m.start,
                offset: m.offset,
                path: m.path.clone(),
            })
            .collect();
        if mappings.is_empty() {
            return Err(TargetError::Core(format!(
                "{} lists no mapped files (no NT_FILE note); make the core with gcore or a kernel core dump",
                core.path().display()
            )));
        }
        // The program's own mapping (lowest address among files named like the binary, or the
        // first mapping) is read from `ruby_bin`.
        let bin_name = ruby_bin
            .file_name()
            .map(|n| n.to_string_lossy().to_string());
        let program = mappings
            .iter()
            .find(|m| {
                Path::new(&m.path)
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    == bin_name
            })
            .or_else(|| mappings.iter().min_by_key(|m| m.start))
            .map(|m| m.path.clone());
        if let Some(program) = &program {
            core.substitute(program, ruby_bin.to_path_buf());
        }
        let open = |path: &str| -> Option<ElfImage> {
            let local = if Some(path) == program.as_deref() {
                ruby_bin.to_path_buf()
            } else {
                PathBuf::from(path)
            };
            ElfImage::read(&local).ok()
        };
        let found = locate(&mappings, &*core, open);
        found.ok_or_else(|| {
            TargetError::Core(format!(
                "found no Ruby in {}: neither {} nor the libruby it mapped defines `ruby_version`; pass the ruby binary that dumped it with --ruby",
                core.path().display(),
                ruby_bin.display()
            ))
        })?
    }
}

fn layout_for(version: &str) -> Result<&'static Layout, TargetError> {
    Layout::for_version(version).ok_or_else(|| TargetError::Unsupported {
        version: version.to_string(),
        known: Layout::known_versions(),
    })
}

#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    pub(crate) start: usize,
    pub(crate) offset: usize,
    pub(crate) path: String,
}

pub(crate) fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut parts = line.split_whitespace();
    let range = parts.next()?;
    let _perms = parts.next()?;
    let offset = usize::from_str_radix(parts.next()?, 16).ok()?;
    let _dev = parts.next()?;
    let _inode = parts.next()?;
    let path: String = parts.collect::<Vec<_>>().join(" ");
    if !path.starts_with('/') {
        return None;
    }
    let start = usize::from_str_radix(range.split('-').next()?, 16).ok()?;
    Some(Mapping {
        start,
        offset,
        path,
    })
}

/// Tries libruby first, then every other mapped file, for the one defining Ruby's symbols.
fn locate<M: Memory>(
    mappings: &[Mapping],
    mem: &M,
    open: impl Fn(&str) -> Option<ElfImage>,
) -> Option<Result<Target, TargetError>> {
    let mut paths: Vec<&str> = Vec::new();
    for m in mappings {
        if !paths.contains(&m.path.as_str()) {
            paths.push(&m.path);
        }
    }
    let is_libruby = |p: &str| {
        Path::new(p)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("libruby"))
    };
    paths.sort_by_key(|p| !is_libruby(p));
    for path in paths {
        let Some(image) = open(path) else { continue };
        let (Some(version_sym), Some(vm_sym)) = (
            image.symbol("ruby_version"),
            image.symbol("ruby_current_vm_ptr"),
        ) else {
            continue;
        };
        let first = mappings
            .iter()
            .filter(|m| m.path == path)
            .min_by_key(|m| m.start)?;
        let bias = image.bias(first.start, first.offset)?;
        return Some(finish(mem, &image, bias, version_sym, vm_sym, path));
    }
    None
}

fn finish<M: Memory>(
    mem: &M,
    image: &ElfImage,
    bias: usize,
    version_sym: u64,
    vm_sym: u64,
    path: &str,
) -> Result<Target, TargetError> {
    let mut buf = [0u8; 16];
    mem.read_bytes(bias + version_sym as usize, &mut buf)?;
    let version: String = buf
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let layout = layout_for(&version)?;
    let (global_symbols, found_by) = match image.symbol("ruby_global_symbols") {
        Some(a) => (Some(bias + a as usize), SymbolsFoundBy::Symbol),
        None => match scan_for_symbols(mem, layout, image, bias) {
            Some(a) => (Some(a), SymbolsFoundBy::Scan),
            None => (None, SymbolsFoundBy::NotFound),
        },
    };
    Ok(Target {
        version,
        layout,
        vm_ptr: bias + vm_sym as usize,
        global_symbols,
        symbols_found_by: found_by,
        library: path.to_string(),
    })
}

/// Looks through the library's `.data` then `.bss` for the global symbol table: a word-aligned
/// `{ u32 last_id; st_table *str_sym; VALUE ids; ... }` whose `ids` names `initialize` right.
fn scan_for_symbols<M: Memory>(
    mem: &M,
    l: &'static Layout,
    image: &ElfImage,
    bias: usize,
) -> Option<usize> {
    for &(addr, size) in &image.data_sections {
        let start = bias + addr as usize;
        let mut bytes = vec![0u8; size.min(4 << 20) as usize];
        if mem.read_bytes(start, &mut bytes).is_err() {
            continue;
        }
        for at in (0..bytes.len().saturating_sub(24)).step_by(8) {
            let w = |o: usize| crate::memory::word_at(&bytes, at + o).unwrap_or(0);
            let last_id = w(0) & 0xffff_ffff;
            let (str_sym, ids) = (w(8), w(16));
            if last_id <= l.t_initialize
                || last_id > 50_000_000
                || str_sym == 0
                || str_sym & 7 != 0
                || ids == 0
                || ids & 7 != 0
            {
                continue;
            }
            let candidate = start + at;
            if Objects::symbols_table_is_valid(mem, l, candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_maps_lines() {
        let m = parse_maps_line(
            "7f0dc0a00000-7f0dc0a4c000 r--p 00001000 08:01 1234   /usr/lib/x86_64-linux-gnu/libruby-3.1.so.3.1.2",
        )
        .unwrap();
        assert_eq!(m.start, 0x7f0dc0a00000);
        assert_eq!(m.offset, 0x1000);
        assert!(m.path.ends_with("libruby-3.1.so.3.1.2"));
        assert!(parse_maps_line("7f00-7f01 rw-p 00000000 00:00 0 [heap]").is_none());
    }

    #[test]
    fn unknown_versions_name_the_supported_range() {
        let e = Target::known("2.7.1", 0x1000, None).unwrap_err();
        assert!(e.to_string().contains("3.1.0 to 4.0.9"), "{e}");
    }
}
