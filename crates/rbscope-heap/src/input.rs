//! Opening a dump and reading it in parallel, chunk by chunk.
//!
//! A plain dump is mapped and cut into chunks at line ends; `jobs` threads take chunks in turn,
//! so reading scales with cores and the file's pages are never copied into our memory (they stay
//! page cache, not anonymous memory). A gzip or zstd dump is decompressed by one thread into
//! bounded, recycled blocks that the same workers read. Every analysis is a fold over records:
//! each worker keeps its own state, and gets the chunk's sequence number so results that depend
//! on the order of the file (node numbering) can be put back in order.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use crate::parse::{parse_line, LineError, Record, RecordKind};

/// Bytes per chunk a worker takes at once.
const CHUNK: usize = 4 << 20;

/// Why a dump cannot be analysed. Each says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    #[error("cannot read {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path} is empty: a heap dump has one JSON object per line (ObjectSpace.dump_all)")]
    Empty { path: PathBuf },
    #[error("{path} is not a heap dump ({reason}); rbscope reads ObjectSpace.dump_all output (JSON lines, optionally gzip or zstd)")]
    NotAHeapDump { path: PathBuf, reason: String },
    #[error("{path} is truncated: {detail}; the dump was not finished (the writer died or its IO was not closed). Pass --allow-truncated to analyse the complete records before it")]
    Truncated { path: PathBuf, detail: String },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// How the bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Progress of a scan, read by whoever draws a progress bar. `total` is the file's size;
/// `done` counts the file's bytes consumed so far (compressed bytes for a compressed dump).
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

/// Counts of one scan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanStats {
    /// Uncompressed bytes read.
    pub bytes: u64,
    pub lines: u64,
    /// Heap slots (objects).
    pub objects: u64,
    pub roots: u64,
    pub shapes: u64,
    /// Lines that were not valid JSON but were read (Ruby's unescaped fields).
    pub invalid_json: u64,
    /// Lines that could not be read at all, and where the first one was.
    pub unreadable: u64,
    pub first_unreadable: Option<(u64, LineError)>,
    /// The stream ended in the middle of a record.
    pub truncated_at: Option<u64>,
}

impl ScanStats {
    fn merge(&mut self, o: &ScanStats) {
        self.bytes += o.bytes;
        self.lines += o.lines;
        self.objects += o.objects;
        self.roots += o.roots;
        self.shapes += o.shapes;
        self.invalid_json += o.invalid_json;
        self.unreadable += o.unreadable;
        self.first_unreadable = match (self.first_unreadable, o.first_unreadable) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        self.truncated_at = self.truncated_at.or(o.truncated_at);
    }
}

/// Options of a scan.
#[derive(Clone, Copy, Debug)]
pub struct ScanOptions<'a> {
    pub jobs: usize,
    pub progress: Option<&'a Progress>,
    /// Analyse a dump whose last record was cut off (otherwise that is an error).
    pub allow_truncated: bool,
}

impl Default for ScanOptions<'_> {
    fn default() -> Self {
        ScanOptions {
            jobs: default_jobs(),
            progress: None,
            allow_truncated: false,
        }
    }
}

/// The number of cores, at least one.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// An opened dump, checked to look like one.
pub struct Dump {
    path: PathBuf,
    compression: Compression,
    map: Option<memmap2::Mmap>,
    file_len: u64,
}

impl Dump {
    /// Opens `path` and checks that its first line is a heap dump record.
    pub fn open(path: &Path) -> Result<Dump, HeapError> {
        let open_err = |source| HeapError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(io::Error::other("it is a directory")));
        }
        let file_len = meta.len();
        if file_len == 0 {
            return Err(HeapError::Empty {
                path: path.to_path_buf(),
            });
        }
        let mut magic = [0u8; 4];
        let n = (&file).take(4).read(&mut magic).map_err(open_err)?;
        let compression = match &magic[..n] {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
            _ => Compression::None,
        };
        let map = if compression == Compression::None {
            // SAFETY: the map is read-only and private to this process. A dump being rewritten
            // while we read it could change bytes under us; the parser treats every byte as
            // untrusted input, so that gives wrong counts at worst, never unsafety in our code.
            Some(unsafe { memmap2::Mmap::map(&file) }.map_err(open_err)?)
        } else {
            None
        };
        let dump = Dump {
            path: path.to_path_buf(),
            compression,
            map,
            file_len,
        };
        dump.sniff()?;
        Ok(dump)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The size of the file on disk.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The first line must read as a record; otherwise this is not a dump.
    fn sniff(&self) -> Result<(), HeapError> {
        let mut head = Vec::new();
        match &self.map {
            Some(map) => head.extend_from_slice(&map[..map.len().min(1 << 20)]),
            None => {
                let mut r = self.decoder()?;
                let mut buf = vec![0u8; 64 << 10];
                while head.len() < (1 << 20) && !head.contains(&b'\n') {
                    let n = match r.read(&mut buf) {
                        Ok(n) => n,
                        Err(e) => {
                            return Err(HeapError::NotAHeapDump {
                                path: self.path.clone(),
                                reason: format!("cannot decompress it: {e}"),
                            })
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
            }
        }
        if head.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(HeapError::Empty {
                path: self.path.clone(),
            });
        }
        let first = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
        let ends = head.len() > first.len();
        match parse_line(first) {
            Ok(_) => Ok(()),
            Err(LineError::Truncated) if !ends => Err(HeapError::Truncated {
                path: self.path.clone(),
                detail: "its only line ends in the middle of a record".into(),
            }),
            Err(e) => {
                let printable = first
                    .iter()
                    .take(64)
                    .all(|b| b.is_ascii() && !b.is_ascii_control() || *b == b'\t');
                let reason = if printable {
                    format!("its first line {e}")
                } else {
                    "it starts with binary data".to_string()
                };
                Err(HeapError::NotAHeapDump {
                    path: self.path.clone(),
                    reason,
                })
            }
        }
    }

    fn decoder(&self) -> Result<Box<dyn Read + Send>, HeapError> {
        let file = File::open(&self.path).map_err(|source| HeapError::Open {
            path: self.path.clone(),
            source,
        })?;
        self.decode(file)
    }

    /// The decompressed bytes of `raw` (the file's bytes, as they are on disk).
    fn decode<'r>(
        &self,
        raw: impl Read + Send + 'r,
    ) -> Result<Box<dyn Read + Send + 'r>, HeapError> {
        Ok(match self.compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
                io::BufReader::with_capacity(1 << 20, raw),
            )),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(raw).map_err(|source| {
                    HeapError::Read {
                        path: self.path.clone(),
                        source,
                    }
                })?)
            }
            Compression::None => Box::new(raw),
        })
    }

    /// Reads every record once. Each worker starts with `init()` and is given every record of the
    /// chunks it takes, with the chunk's sequence number (chunks are numbered in file order).
    /// Returns the workers' states (in no particular order) and the counts.
    pub fn fold<S, I, F>(
        &self,
        opts: ScanOptions<'_>,
        init: I,
        each: F,
    ) -> Result<(Vec<S>, ScanStats), HeapError>
    where
        S: Send,
        I: Fn() -> S + Sync,
        F: Fn(&mut S, usize, &Record<'_>) + Sync,
    {
        let (states, stats) = self.fold_chunks(opts, init, |state, seq, base, chunk, stats| {
            read_chunk(chunk, base, stats, |rec| each(state, seq, rec));
        })?;
        if let Some(at) = stats.truncated_at {
            if !opts.allow_truncated {
                return Err(HeapError::Truncated {
                    path: self.path.clone(),
                    detail: format!(
                        "the last line (at byte {at}) ends in the middle of a record, after {} complete records",
                        stats.objects + stats.roots + stats.shapes
                    ),
                });
            }
        }
        if stats.objects == 0 {
            return Err(HeapError::NotAHeapDump {
                path: self.path.clone(),
                reason: match stats.first_unreadable {
                    Some((at, e)) => format!("no line could be read as a heap object; the first bad line, at byte {at}, {e}"),
                    None => "it holds no heap objects".into(),
                },
            });
        }
        Ok((states, stats))
    }

    /// Like [`Dump::fold`], but gives raw lines (without their newline) and counts nothing:
    /// for passes that look at few lines and can skip the rest before parsing them.
    pub fn fold_lines<S, I, F>(
        &self,
        opts: ScanOptions<'_>,
        init: I,
        each: F,
    ) -> Result<Vec<S>, HeapError>
    where
        S: Send,
        I: Fn() -> S + Sync,
        F: Fn(&mut S, &[u8]) + Sync,
    {
        let (states, _) = self.fold_chunks(opts, init, |state, _, _, chunk, stats| {
            stats.bytes += chunk.len() as u64;
            for line in chunk.split(|b| *b == b'\n') {
                if !line.is_empty() {
                    each(state, line);
                }
            }
        })?;
        Ok(states)
    }

    /// The chunk-level engine under [`Dump::fold`].
    fn fold_chunks<S, I, F>(
        &self,
        opts: ScanOptions<'_>,
        init: I,
        each: F,
    ) -> Result<(Vec<S>, ScanStats), HeapError>
    where
        S: Send,
        I: Fn() -> S + Sync,
        F: Fn(&mut S, usize, u64, &[u8], &mut ScanStats) + Sync,
    {
        let jobs = opts.jobs.max(1);
        if let Some(p) = opts.progress {
            p.total.store(self.file_len, Ordering::Relaxed);
            p.done.store(0, Ordering::Relaxed);
        }
        match &self.map {
            Some(map) => Ok(fold_mapped(map, jobs, opts.progress, &init, &each)),
            None => self.fold_stream(jobs, opts.progress, &init, &each),
        }
    }

    fn fold_stream<S, I, F>(
        &self,
        jobs: usize,
        progress: Option<&Progress>,
        init: &I,
        each: &F,
    ) -> Result<(Vec<S>, ScanStats), HeapError>
    where
        S: Send,
        I: Fn() -> S + Sync,
        F: Fn(&mut S, usize, u64, &[u8], &mut ScanStats) + Sync,
    {
        let counting = CountingFile {
            inner: File::open(&self.path).map_err(|source| HeapError::Open {
                path: self.path.clone(),
                source,
            })?,
            progress,
        };
        let reader = self.decode(counting)?;
        let (full_tx, full_rx) = mpsc::sync_channel::<(usize, u64, Vec<u8>)>(jobs * 2);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        let full_rx = Mutex::new(full_rx);
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || produce_blocks(reader, full_tx, empty_rx));
            let workers: Vec<_> = (0..jobs)
                .map(|_| {
                    let full_rx = &full_rx;
                    let empty_tx = empty_tx.clone();
                    scope.spawn(move || {
                        let mut state = init();
                        let mut stats = ScanStats::default();
                        loop {
                            let next = match full_rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => break,
                            };
                            let Ok((seq, base, block)) = next else { break };
                            each(&mut state, seq, base, &block, &mut stats);
                            let _ = empty_tx.send(block);
                        }
                        (state, stats)
                    })
                })
                .collect();
            drop(empty_tx);
            let (states, stats) = gather(workers);
            let produced = match producer.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            };
            match produced {
                Ok(()) => Ok((states, stats)),
                Err(ProduceError::Io(source)) if source.kind() == io::ErrorKind::UnexpectedEof => {
                    Err(HeapError::Truncated {
                        path: self.path.clone(),
                        detail: format!(
                            "the compressed stream ends early (after {} bytes of dump)",
                            stats.bytes
                        ),
                    })
                }
                Err(ProduceError::Io(source)) => Err(HeapError::Read {
                    path: self.path.clone(),
                    source,
                }),
            }
        })
    }
}

enum ProduceError {
    Io(io::Error),
}

/// Fills blocks that end at a line end (the rest is carried into the next block) and sends them
/// with their sequence number and their offset in the uncompressed stream.
fn produce_blocks(
    mut reader: Box<dyn Read + Send + '_>,
    full_tx: mpsc::SyncSender<(usize, u64, Vec<u8>)>,
    empty_rx: mpsc::Receiver<Vec<u8>>,
) -> Result<(), ProduceError> {
    let mut carry: Vec<u8> = Vec::new();
    let mut seq = 0usize;
    let mut offset = 0u64;
    loop {
        let mut block = empty_rx.try_recv().unwrap_or_default();
        block.clear();
        block.reserve(CHUNK + carry.len());
        block.extend_from_slice(&carry);
        carry.clear();
        let mut eof = false;
        while block.len() < CHUNK {
            let start = block.len();
            block.resize(start + (CHUNK - start).max(64 << 10), 0);
            let n = loop {
                match reader.read(&mut block[start..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        block.truncate(start);
                        // What was decoded before the error is still analysed.
                        if !block.is_empty() {
                            let _ = full_tx.send((seq, offset, block));
                        }
                        return Err(ProduceError::Io(e));
                    }
                }
            };
            block.truncate(start + n);
            if n == 0 {
                eof = true;
                break;
            }
        }
        if !eof {
            if let Some(last_nl) = memchr::memrchr(b'\n', &block) {
                carry.extend_from_slice(&block[last_nl + 1..]);
                block.truncate(last_nl + 1);
            }
        }
        let len = block.len() as u64;
        if len > 0 && full_tx.send((seq, offset, block)).is_err() {
            return Ok(());
        }
        seq += 1;
        offset += len;
        if eof {
            return Ok(());
        }
    }
}

/// Counts compressed bytes for the progress bar.
struct CountingFile<'a> {
    inner: File,
    progress: Option<&'a Progress>,
}

impl Read for CountingFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = self.progress {
            p.done.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

fn fold_mapped<S, I, F>(
    data: &[u8],
    jobs: usize,
    progress: Option<&Progress>,
    init: &I,
    each: &F,
) -> (Vec<S>, ScanStats)
where
    S: Send,
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize, u64, &[u8], &mut ScanStats) + Sync,
{
    let chunks = data.len().div_ceil(CHUNK);
    let next = AtomicUsize::new(0);
    // The first line that starts at or after `at`.
    let line_start = |at: usize| -> usize {
        if at == 0 || at >= data.len() {
            return at.min(data.len());
        }
        if data[at - 1] == b'\n' {
            return at;
        }
        match memchr::memchr(b'\n', &data[at..]) {
            Some(k) => at + k + 1,
            None => data.len(),
        }
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.min(chunks.max(1)))
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let mut state = init();
                    let mut stats = ScanStats::default();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= chunks {
                            break;
                        }
                        let start = line_start(k * CHUNK);
                        let end = line_start((k + 1) * CHUNK);
                        if start < end {
                            each(&mut state, k, start as u64, &data[start..end], &mut stats);
                        }
                        if let Some(p) = progress {
                            p.done
                                .fetch_add((end.saturating_sub(start)) as u64, Ordering::Relaxed);
                        }
                    }
                    (state, stats)
                })
            })
            .collect();
        gather(workers)
    })
}

/// Reads every record of an in-memory dump, one thread, no file: for small inputs, tests and
/// fuzzing. A last line without its newline that stops mid-record is counted as truncation.
pub fn read_records(data: &[u8], f: impl FnMut(&Record<'_>)) -> ScanStats {
    let mut stats = ScanStats::default();
    read_chunk(data, 0, &mut stats, f);
    stats
}

/// The workers' states and their counts added up (a worker's panic goes on up).
fn gather<S>(
    workers: Vec<std::thread::ScopedJoinHandle<'_, (S, ScanStats)>>,
) -> (Vec<S>, ScanStats) {
    let mut states = Vec::with_capacity(workers.len());
    let mut stats = ScanStats::default();
    for w in workers {
        match w.join() {
            Ok((s, st)) => {
                states.push(s);
                stats.merge(&st);
            }
            Err(p) => std::panic::resume_unwind(p),
        }
    }
    (states, stats)
}

/// Parses every line of a chunk (which starts at a line start) and counts what it saw.
fn read_chunk(chunk: &[u8], base: u64, stats: &mut ScanStats, mut f: impl FnMut(&Record<'_>)) {
    stats.bytes += chunk.len() as u64;
    let mut pos = 0usize;
    while pos < chunk.len() {
        let (line, next, complete) = match memchr::memchr(b'\n', &chunk[pos..]) {
            Some(k) => (&chunk[pos..pos + k], pos + k + 1, true),
            None => (&chunk[pos..], chunk.len(), false),
        };
        let at = base + pos as u64;
        pos = next;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        stats.lines += 1;
        match parse_line(line) {
            Ok(rec) => {
                match rec.kind {
                    RecordKind::Object => stats.objects += 1,
                    RecordKind::Root => stats.roots += 1,
                    RecordKind::Shape => stats.shapes += 1,
                }
                if rec.invalid_json {
                    stats.invalid_json += 1;
                }
                f(&rec);
            }
            Err(e) => {
                if !complete && e == LineError::Truncated {
                    stats.truncated_at = Some(at);
                } else {
                    stats.unreadable += 1;
                    if stats.first_unreadable.is_none_or(|(first, _)| at < first) {
                        stats.first_unreadable = Some((at, e));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    const LINES: &str = concat!(
        "{\"type\":\"ROOT\", \"root\":\"vm\", \"references\":[\"0x10\"]}\n",
        "{\"address\":\"0x10\", \"type\":\"STRING\", \"value\":\"a\", \"memsize\":40}\n",
        "{\"address\":\"0x18\", \"type\":\"STRING\", \"file\":\"we\"ird.rb\", \"line\":1, \"memsize\":40}\n",
    );

    fn count(p: &Path, allow: bool) -> Result<ScanStats, HeapError> {
        let d = Dump::open(p)?;
        let opts = ScanOptions {
            jobs: 2,
            progress: None,
            allow_truncated: allow,
        };
        d.fold(opts, || 0u64, |n, _, _| *n += 1).map(|(_, s)| s)
    }

    #[test]
    fn plain_gzip_and_zstd_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let plain = write(dir.path(), "d.json", LINES.as_bytes());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(LINES.as_bytes()).unwrap();
        let gz = write(dir.path(), "d.json.gz", &gz.finish().unwrap());
        let zst = write(
            dir.path(),
            "d.json.zst",
            &zstd::encode_all(LINES.as_bytes(), 1).unwrap(),
        );
        for p in [plain, gz, zst] {
            let s = count(&p, false).unwrap();
            assert_eq!(
                (s.objects, s.roots, s.invalid_json, s.unreadable),
                (2, 1, 1, 0),
                "{p:?}"
            );
        }
    }

    #[test]
    fn bad_files_are_named_for_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let e = count(&write(dir.path(), "empty", b""), false).unwrap_err();
        assert!(matches!(e, HeapError::Empty { .. }), "{e}");
        let e = count(
            &write(dir.path(), "garbage", &[0x7f, 0x45, 0x4c, 0x46, 0, 1, 2]),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("binary data"), "{e}");
        let e = count(&write(dir.path(), "text", b"hello world\n"), false).unwrap_err();
        assert!(matches!(e, HeapError::NotAHeapDump { .. }), "{e}");
        let cut = &LINES.as_bytes()[..LINES.len() - 20];
        let e = count(&write(dir.path(), "cut", cut), false).unwrap_err();
        assert!(matches!(e, HeapError::Truncated { .. }), "{e}");
        let s = count(&write(dir.path(), "cut2", cut), true).unwrap();
        assert_eq!(s.objects, 1);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(LINES.repeat(1000).as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let e = count(
            &write(dir.path(), "cut.gz", &bytes[..bytes.len() / 2]),
            false,
        )
        .unwrap_err();
        assert!(matches!(e, HeapError::Truncated { .. }), "{e}");
        let e = Dump::open(&dir.path().join("missing")).err().unwrap();
        assert!(e.to_string().contains("No such file"), "{e}");
    }

    #[test]
    fn chunks_cut_at_line_ends_see_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let many = LINES.repeat(200_000); // about 30 MB: several chunks
        let p = write(dir.path(), "big.json", many.as_bytes());
        let s = count(&p, false).unwrap();
        assert_eq!((s.objects, s.roots, s.unreadable), (400_000, 200_000, 0));
    }
}
