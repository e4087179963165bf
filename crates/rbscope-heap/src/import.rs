//! A heap dump as tables, for SQL: `rbscope heap import DUMP --sqlite heap.db | --parquet DIR`.
//!
//! The built-in analyses answer the usual questions; SQL answers the next one. Who holds this
//! object is a join of `refs` on `to_address`; which classes own the most memory is a
//! `GROUP BY class_name`; what a root category pins is `roots` joined to `refs`. A SQLite file
//! opens anywhere (`sqlite3`, DB Browser, Python), and a folder of Parquet files is what DuckDB,
//! pandas, Polars or Spark read directly.
//!
//! # Schema
//!
//! The same columns in both formats. Addresses are integers (`INTEGER` / `INT64`): user-space
//! pointers are below 2^63, so they fit a signed 64-bit column unchanged; `printf('0x%x', address)`
//! (SQLite, DuckDB) gives the dump's form back.
//!
//! * `objects`: one row per heap slot (ROOT and SHAPE records are not objects).
//!   `address`, `type` (`STRING`, `OBJECT`, …), `class` (the `class` pointer, NULL when absent),
//!   `class_name` (the `name` of that class, or its `real_class_name` for anonymous classes and
//!   singletons; NULL for IMEMO records, whose `class` is junk or the owner class up to Ruby 3.1),
//!   `memsize` (bytes, slot included, 0 when absent), `file`, `line`, `method`, `generation`
//!   (allocation tracing), `name` (a class or module's `name` or `real_class_name`), `value` (a
//!   STRING, SYMBOL or FLOAT value, whole, escapes undone), `bytesize`, `length` (arrays), `size`
//!   (hashes), `imemo_type`, `struct` (a typed DATA's struct name), `shape_id`, `slot_size`
//!   (Ruby 3.2+), `frozen`, `old` (`flags.old`) and `invalid_json` (the line was not valid JSON but
//!   was read: Ruby writes some fields without escaping). Booleans are 0/1 in SQLite.
//! * `refs(from_address, to_address)`: one row per entry of an object's `references`, duplicates
//!   kept. The class pointer is not a ref: it is `objects.class`.
//! * `roots(root, address)`: one row per reference of a ROOT record (`vm`, `global_tbl`, …).
//! * SQLite only: `meta(key, value)`: the source file, this crate's version, the counts and the
//!   number of invalid JSON lines.
//!
//! Text is UTF-8; bytes that are not become U+FFFD.
//!
//! # How
//!
//! Two passes over the dump, both parallel ([`Dump::fold`]). The first collects class names (a few
//! thousand entries): a class record can come after its instances, and Parquet files cannot be
//! patched afterwards. The second turns records into rows on every core, resolves `class_name`
//! there, and sends owned batches over a bounded channel to one writer thread. SQLite gets one
//! transaction of prepared inserts with journaling off, and its indexes after the load
//! (`objects(address)`, `objects(class)`, `refs(to_address)`, `refs(from_address)`). Parquet gets
//! row groups of about a million rows (fewer when their text is large), compressed with zstd, so
//! memory stays bounded by a row group whatever the size of the dump. A progress bar runs once
//! per pass.
//!
//! Output goes to a temporary file next to the final one (mode 0600: dumps hold the program's
//! strings), and takes the final name only when complete, so a failure (a full disk, a bad dump)
//! never leaves a half-written database behind. An existing file is never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{
    SerializedColumnWriter, SerializedFileWriter, SerializedRowGroupWriter,
};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;
use rusqlite::{Connection, OpenFlags};
use rustc_hash::FxHashMap;

use crate::input::{Dump, HeapError, ScanOptions, ScanStats};
use crate::parse::{ObjType, Record, RecordKind, Text};

/// Rows per batch sent from a parsing worker to the writer.
const BATCH_ROWS: usize = 8192;
/// Text bytes per batch: a batch of huge string values is sent early.
const BATCH_TEXT: usize = 4 << 20;
/// Rows per Parquet row group (small in tests, so that the fixture spans several).
const ROW_GROUP_ROWS: usize = if cfg!(test) { 4096 } else { 1 << 20 };
/// Text bytes buffered for one Parquet row group before it is written anyway.
const ROW_GROUP_TEXT: usize = 128 << 20;
/// Version of the tables' layout, in `meta` and in the Parquet files' metadata.
const SCHEMA_VERSION: &str = "1";

/// What an import wrote.
#[derive(Debug, Clone, Default)]
pub struct ImportStats {
    /// Rows of `objects`.
    pub objects: u64,
    /// Rows of `refs`.
    pub refs: u64,
    /// Rows of `roots`.
    pub roots: u64,
    /// SHAPE records seen (not imported: they are not heap objects).
    pub shapes: u64,
    /// The counts of the scan that produced the rows.
    pub scan: ScanStats,
    pub elapsed: Duration,
}

impl ImportStats {
    /// Rows written, all tables together.
    pub fn rows(&self) -> u64 {
        self.objects + self.refs + self.roots
    }

    /// Rows written per second of the whole import (both passes, indexes included).
    pub fn rows_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.rows() as f64 / secs
        } else {
            0.0
        }
    }
}

/// Why an import failed. Whatever the reason, nothing is left under the output's name.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Heap(#[from] HeapError),
    #[error("{path} already exists; an import never overwrites: remove it or choose another path")]
    Exists { path: PathBuf },
    #[error("the directory {dir} does not exist: create it or choose another output path")]
    NoDir { dir: PathBuf },
    #[error("writing the SQLite database {path}: {source} (nothing was left under that name; check the free space and permissions of its directory)")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("writing the Parquet file {path}: {source} (nothing was left under that name; check the free space and permissions of its directory)")]
    Parquet { path: PathBuf, source: ParquetError },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImportError {
    let path = path.to_path_buf();
    move |source| ImportError::Io {
        action,
        path,
        source,
    }
}

/// Imports `dump` into a new SQLite database at `out` (which must not exist).
pub fn import_sqlite(
    dump: &Dump,
    opts: ScanOptions<'_>,
    out: &Path,
) -> Result<ImportStats, ImportError> {
    let start = Instant::now();
    let (tmp, _) = TempFile::create(out)?;
    let sql_err = |source| ImportError::Sqlite {
        path: out.to_path_buf(),
        source,
    };
    let names = class_names(dump, opts)?;
    // The file exists (created 0600 above); no URI parsing of odd names.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(tmp.path(), flags).map_err(sql_err)?;
    conn.execute_batch(SQLITE_SCHEMA).map_err(sql_err)?;
    let sink = SqliteSink {
        conn,
        insert_refs: multi_insert_refs(),
        dest: out.to_path_buf(),
        counts: Counts::default(),
    };
    let (sink, scan) = load(dump, opts, &names, sink)?;
    let SqliteSink { conn, counts, .. } = sink;
    let stats = ImportStats {
        objects: counts.objects,
        refs: counts.refs,
        roots: counts.roots,
        shapes: scan.shapes,
        scan,
        elapsed: Duration::ZERO,
    };
    sqlite_finish(&conn, dump, &stats).map_err(sql_err)?;
    conn.close().map_err(|(_, e)| sql_err(e))?;
    tmp.persist()?;
    Ok(ImportStats {
        elapsed: start.elapsed(),
        ..stats
    })
}

/// Imports `dump` into `dir/objects.parquet`, `dir/refs.parquet` and `dir/roots.parquet`. `dir`
/// is created if missing; none of the three files may exist.
pub fn import_parquet(
    dump: &Dump,
    opts: ScanOptions<'_>,
    dir: &Path,
) -> Result<ImportStats, ImportError> {
    let start = Instant::now();
    let created = !dir.is_dir();
    if created {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create the directory", dir))?;
    }
    let imported = write_parquet(dump, opts, dir);
    if imported.is_err() && created {
        // Only removed when empty: it was made for this import.
        let _ = fs::remove_dir(dir);
    }
    let (counts, scan) = imported?;
    Ok(ImportStats {
        objects: counts.objects,
        refs: counts.refs,
        roots: counts.roots,
        shapes: scan.shapes,
        scan,
        elapsed: start.elapsed(),
    })
}

fn write_parquet(
    dump: &Dump,
    opts: ScanOptions<'_>,
    dir: &Path,
) -> Result<(Counts, ScanStats), ImportError> {
    let paths = ["objects", "refs", "roots"].map(|t| dir.join(format!("{t}.parquet")));
    for p in &paths {
        if fs::symlink_metadata(p).is_ok() {
            return Err(ImportError::Exists { path: p.clone() });
        }
    }
    let [objects_path, refs_path, roots_path] = paths;
    let names = class_names(dump, opts)?;
    let meta = vec![
        KeyValue::new("rbscope.source".into(), dump.path().display().to_string()),
        KeyValue::new(
            "rbscope.version".into(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        KeyValue::new("rbscope.schema_version".into(), SCHEMA_VERSION.to_string()),
    ];
    let sink = ParquetSink {
        objects: Table::create(objects_path, OBJECTS_SCHEMA, meta.clone())?,
        refs: Table::create(refs_path, REFS_SCHEMA, meta.clone())?,
        roots: Table::create(roots_path, ROOTS_SCHEMA, meta)?,
        counts: Counts::default(),
    };
    let (sink, scan) = load(dump, opts, &names, sink)?;
    let ParquetSink {
        objects,
        refs,
        roots,
        counts,
    } = sink;
    let files = [objects.finish()?, refs.finish()?, roots.finish()?];
    TempFile::persist_all(files)?;
    Ok((counts, scan))
}

// ---------------------------------------------------------------------------------------------
// Pass 1: class names.

/// Class and module names by address: `name`, else `real_class_name`.
type ClassNames = FxHashMap<u64, Box<str>>;

fn class_names(dump: &Dump, opts: ScanOptions<'_>) -> Result<ClassNames, HeapError> {
    let (maps, _) = dump.fold(opts, ClassNames::default, |names, _, rec| {
        if matches!(rec.ty, ObjType::Class | ObjType::Module) {
            if let Some(name) = rec.name.or(rec.real_class_name) {
                names.insert(rec.address, lossy(name).into());
            }
        }
    })?;
    let mut maps = maps.into_iter();
    let mut all = maps.next().unwrap_or_default();
    for m in maps {
        all.extend(m);
    }
    Ok(all)
}

fn lossy(t: Text<'_>) -> String {
    String::from_utf8_lossy(&t.bytes()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Pass 2: rows, made by the parsing workers and written by one thread.

/// A string of a batch: a range of its text.
#[derive(Clone, Copy, Debug)]
struct Span(usize, usize);

/// One `objects` row. Strings are spans of the batch's text, except the class name, which is
/// shared with the class name map.
struct ObjectRow<'m> {
    address: i64,
    ty: ObjType,
    class: Option<i64>,
    class_name: Option<&'m str>,
    memsize: i64,
    file: Option<Span>,
    line: Option<i64>,
    method: Option<Span>,
    generation: Option<i64>,
    name: Option<Span>,
    value: Option<Span>,
    bytesize: Option<i64>,
    length: Option<i64>,
    size: Option<i64>,
    imemo_type: Option<Span>,
    struct_name: Option<Span>,
    shape_id: Option<i64>,
    slot_size: Option<i64>,
    frozen: bool,
    old: bool,
    invalid_json: bool,
}

/// Rows of every table, owned, as sent to the writer.
#[derive(Default)]
struct Batch<'m> {
    objects: Vec<ObjectRow<'m>>,
    refs: Vec<(i64, i64)>,
    roots: Vec<(Option<Span>, i64)>,
    text: String,
}

impl Batch<'_> {
    fn put(&mut self, t: Option<Text<'_>>) -> Option<Span> {
        let t = t?;
        let start = self.text.len();
        self.text.push_str(&String::from_utf8_lossy(&t.bytes()));
        Some(Span(start, self.text.len()))
    }

    fn get(&self, s: Option<Span>) -> Option<&str> {
        s.and_then(|Span(a, b)| self.text.get(a..b))
    }

    fn full(&self) -> bool {
        self.objects.len() + self.refs.len() + self.roots.len() >= BATCH_ROWS
            || self.text.len() >= BATCH_TEXT
    }

    fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.refs.is_empty() && self.roots.is_empty()
    }
}

/// Addresses and sizes as SQL integers. Addresses are user-space pointers (below 2^63); anything
/// larger wraps, as a cast does, rather than failing the import.
fn int(v: u64) -> i64 {
    v as i64
}

/// A parsing worker's state: the batch it fills.
struct Worker<'m> {
    tx: mpsc::SyncSender<Batch<'m>>,
    names: &'m ClassNames,
    batch: Batch<'m>,
    /// The writer has stopped (it failed): records are no longer converted.
    closed: bool,
}

impl<'m> Worker<'m> {
    fn add(&mut self, rec: &Record<'_>) {
        if self.closed {
            return;
        }
        let b = &mut self.batch;
        match rec.kind {
            RecordKind::Object => {
                let from = int(rec.address);
                let class_name = if rec.class != 0 && rec.ty != ObjType::Imemo {
                    self.names.get(&rec.class).map(|n| &**n)
                } else {
                    None
                };
                let row = ObjectRow {
                    address: from,
                    ty: rec.ty,
                    class: (rec.class != 0).then(|| int(rec.class)),
                    class_name,
                    memsize: int(rec.memsize),
                    file: b.put(rec.file),
                    line: rec.line.map(i64::from),
                    method: b.put(rec.method),
                    generation: rec.generation.map(i64::from),
                    name: b.put(rec.name.or(rec.real_class_name)),
                    value: b.put(rec.value),
                    bytesize: rec.bytesize.map(int),
                    length: rec.length.map(int),
                    size: rec.size.map(int),
                    imemo_type: b.put(rec.imemo_type),
                    struct_name: b.put(rec.struct_name),
                    shape_id: rec.shape_id.map(int),
                    slot_size: rec.slot_size.map(i64::from),
                    frozen: rec.frozen,
                    old: rec.is_old(),
                    invalid_json: rec.invalid_json,
                };
                b.objects.push(row);
                b.refs
                    .extend(rec.references.iter().map(|to| (from, int(to))));
            }
            RecordKind::Root => {
                let root = b.put(rec.root);
                b.roots
                    .extend(rec.references.iter().map(|to| (root, int(to))));
            }
            RecordKind::Shape => {}
        }
        if b.full() {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.closed || self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if self.tx.send(batch).is_err() {
            self.closed = true;
        }
    }
}

/// Rows written.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    objects: u64,
    refs: u64,
    roots: u64,
}

/// Where the writer thread puts batches.
trait Sink<'m>: Send {
    fn write(&mut self, batch: Batch<'m>) -> Result<(), ImportError>;
}

/// The second pass: workers convert, one thread writes. Returns the sink once every row is in.
fn load<'m, K: Sink<'m>>(
    dump: &Dump,
    opts: ScanOptions<'_>,
    names: &'m ClassNames,
    sink: K,
) -> Result<(K, ScanStats), ImportError> {
    let (tx, rx) = mpsc::sync_channel::<Batch<'m>>(opts.jobs.max(1) * 2);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut sink = sink;
            for batch in rx {
                sink.write(batch)?;
            }
            Ok::<K, ImportError>(sink)
        });
        let folded = dump.fold(
            opts,
            || Worker {
                tx: tx.clone(),
                names,
                batch: Batch::default(),
                closed: false,
            },
            |w, _, rec| w.add(rec),
        );
        let folded = folded.map(|(workers, stats)| {
            for mut w in workers {
                w.send();
            }
            stats
        });
        drop(tx);
        let written = match writer.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // A bad dump is reported before a writer that stopped because of it.
        let stats = folded?;
        Ok((written?, stats))
    })
}

// ---------------------------------------------------------------------------------------------
// SQLite.

const SQLITE_SCHEMA: &str = "
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA locking_mode = EXCLUSIVE;
PRAGMA temp_store = FILE;
-- 256 MiB, used as needed: the sorts that build the indexes run in memory, twice as fast as
-- with 128 MiB on 2M objects.
PRAGMA cache_size = -262144;
CREATE TABLE objects (
    address INTEGER NOT NULL,
    type TEXT NOT NULL,
    class INTEGER,
    class_name TEXT,
    memsize INTEGER NOT NULL,
    file TEXT,
    line INTEGER,
    method TEXT,
    generation INTEGER,
    name TEXT,
    value TEXT,
    bytesize INTEGER,
    length INTEGER,
    size INTEGER,
    imemo_type TEXT,
    struct TEXT,
    shape_id INTEGER,
    slot_size INTEGER,
    frozen INTEGER NOT NULL,
    old INTEGER NOT NULL,
    invalid_json INTEGER NOT NULL
);
CREATE TABLE refs (from_address INTEGER NOT NULL, to_address INTEGER NOT NULL);
CREATE TABLE roots (root TEXT, address INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
BEGIN;
";

const INSERT_OBJECT: &str = "INSERT INTO objects VALUES \
     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)";
const INSERT_REF: &str = "INSERT INTO refs VALUES (?1, ?2)";
/// Refs go in by this many rows per statement: about half the time of one row at a time.
const REFS_PER_INSERT: usize = 128;
const INSERT_ROOT: &str = "INSERT INTO roots VALUES (?1, ?2)";

const SQLITE_INDEXES: &str = "
CREATE INDEX objects_address ON objects(address);
CREATE INDEX objects_class ON objects(class);
CREATE INDEX refs_to ON refs(to_address);
CREATE INDEX refs_from ON refs(from_address);
";

struct SqliteSink {
    conn: Connection,
    /// [`REFS_PER_INSERT`] rows of `refs` in one statement.
    insert_refs: String,
    /// The output's final name, for errors (the temporary file is an implementation detail).
    dest: PathBuf,
    counts: Counts,
}

impl SqliteSink {
    fn insert(&mut self, b: &Batch<'_>) -> rusqlite::Result<()> {
        let mut st = self.conn.prepare_cached(INSERT_OBJECT)?;
        for o in &b.objects {
            st.raw_bind_parameter(1, o.address)?;
            st.raw_bind_parameter(2, o.ty.name())?;
            st.raw_bind_parameter(3, o.class)?;
            st.raw_bind_parameter(4, o.class_name)?;
            st.raw_bind_parameter(5, o.memsize)?;
            st.raw_bind_parameter(6, b.get(o.file))?;
            st.raw_bind_parameter(7, o.line)?;
            st.raw_bind_parameter(8, b.get(o.method))?;
            st.raw_bind_parameter(9, o.generation)?;
            st.raw_bind_parameter(10, b.get(o.name))?;
            st.raw_bind_parameter(11, b.get(o.value))?;
            st.raw_bind_parameter(12, o.bytesize)?;
            st.raw_bind_parameter(13, o.length)?;
            st.raw_bind_parameter(14, o.size)?;
            st.raw_bind_parameter(15, b.get(o.imemo_type))?;
            st.raw_bind_parameter(16, b.get(o.struct_name))?;
            st.raw_bind_parameter(17, o.shape_id)?;
            st.raw_bind_parameter(18, o.slot_size)?;
            st.raw_bind_parameter(19, o.frozen)?;
            st.raw_bind_parameter(20, o.old)?;
            st.raw_bind_parameter(21, o.invalid_json)?;
            st.raw_execute()?;
        }
        self.counts.objects += b.objects.len() as u64;

        let mut chunks = b.refs.chunks_exact(REFS_PER_INSERT);
        if chunks.len() > 0 {
            let mut st = self.conn.prepare_cached(&self.insert_refs)?;
            for chunk in &mut chunks {
                for (i, (from, to)) in chunk.iter().enumerate() {
                    st.raw_bind_parameter(2 * i + 1, from)?;
                    st.raw_bind_parameter(2 * i + 2, to)?;
                }
                st.raw_execute()?;
            }
        }
        let mut st = self.conn.prepare_cached(INSERT_REF)?;
        for (from, to) in chunks.remainder() {
            st.raw_bind_parameter(1, from)?;
            st.raw_bind_parameter(2, to)?;
            st.raw_execute()?;
        }
        self.counts.refs += b.refs.len() as u64;

        let mut st = self.conn.prepare_cached(INSERT_ROOT)?;
        for (root, address) in &b.roots {
            st.raw_bind_parameter(1, b.get(*root))?;
            st.raw_bind_parameter(2, address)?;
            st.raw_execute()?;
        }
        self.counts.roots += b.roots.len() as u64;
        Ok(())
    }
}

fn multi_insert_refs() -> String {
    let mut sql = String::from("INSERT INTO refs VALUES ");
    for i in 0..REFS_PER_INSERT {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?)");
    }
    sql
}

impl<'m> Sink<'m> for SqliteSink {
    fn write(&mut self, batch: Batch<'m>) -> Result<(), ImportError> {
        self.insert(&batch).map_err(|source| ImportError::Sqlite {
            path: self.dest.clone(),
            source,
        })
    }
}

/// Indexes, `meta`, commit.
fn sqlite_finish(conn: &Connection, dump: &Dump, stats: &ImportStats) -> rusqlite::Result<()> {
    conn.execute_batch(SQLITE_INDEXES)?;
    let s = &stats.scan;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let meta: [(&str, String); 15] = [
        ("source", dump.path().display().to_string()),
        ("source_bytes", dump.file_len().to_string()),
        (
            "rbscope_heap_version",
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("schema_version", SCHEMA_VERSION.to_string()),
        ("imported_at_unix", now.to_string()),
        ("objects", stats.objects.to_string()),
        ("refs", stats.refs.to_string()),
        ("roots", stats.roots.to_string()),
        ("shapes", stats.shapes.to_string()),
        ("lines", s.lines.to_string()),
        ("bytes", s.bytes.to_string()),
        ("invalid_json", s.invalid_json.to_string()),
        ("unreadable", s.unreadable.to_string()),
        (
            "truncated_at",
            s.truncated_at.map(|t| t.to_string()).unwrap_or_default(),
        ),
        (
            "address_format",
            "integer; printf('0x%x', address) gives the dump's hex form".to_string(),
        ),
    ];
    let mut st = conn.prepare("INSERT INTO meta VALUES (?1, ?2)")?;
    for (k, v) in meta {
        st.execute((k, v))?;
    }
    drop(st);
    conn.execute_batch("COMMIT; PRAGMA analysis_limit = 1000; ANALYZE;")
}

// ---------------------------------------------------------------------------------------------
// Parquet.

const OBJECTS_SCHEMA: &str = "message objects {
    required int64 address;
    required binary type (STRING);
    optional int64 class;
    optional binary class_name (STRING);
    required int64 memsize;
    optional binary file (STRING);
    optional int64 line;
    optional binary method (STRING);
    optional int64 generation;
    optional binary name (STRING);
    optional binary value (STRING);
    optional int64 bytesize;
    optional int64 length;
    optional int64 size;
    optional binary imemo_type (STRING);
    optional binary struct (STRING);
    optional int64 shape_id;
    optional int64 slot_size;
    required boolean frozen;
    required boolean old;
    required boolean invalid_json;
}";

const REFS_SCHEMA: &str = "message refs {
    required int64 from_address;
    required int64 to_address;
}";

const ROOTS_SCHEMA: &str = "message roots {
    optional binary root (STRING);
    required int64 address;
}";

type FileWriter = SerializedFileWriter<BufWriter<File>>;
type RowGroup<'a> = SerializedRowGroupWriter<'a, BufWriter<File>>;

/// Values of an optional column: only the present ones, and a definition level per row.
#[derive(Default)]
struct OptInt {
    values: Vec<i64>,
    def: Vec<i16>,
}

impl OptInt {
    fn push(&mut self, v: Option<i64>) {
        self.def.push(v.is_some() as i16);
        if let Some(v) = v {
            self.values.push(v);
        }
    }
}

/// A text column: the bytes of its values one after another, where each ends, and a definition
/// level per row.
#[derive(Default)]
struct OptText {
    data: Vec<u8>,
    ends: Vec<usize>,
    def: Vec<i16>,
}

impl OptText {
    fn push(&mut self, v: Option<&str>) {
        self.def.push(v.is_some() as i16);
        if let Some(v) = v {
            self.data.extend_from_slice(v.as_bytes());
            self.ends.push(self.data.len());
        }
    }
}

/// Rows per `write_batch` call when turning buffered text into Parquet values.
const WRITE_CHUNK: usize = 64 << 10;

fn next_column<'a>(rg: &'a mut RowGroup<'_>) -> Result<SerializedColumnWriter<'a>, ParquetError> {
    rg.next_column()?
        .ok_or_else(|| ParquetError::General("more columns written than the schema has".into()))
}

fn put_ints(rg: &mut RowGroup<'_>, values: &[i64]) -> Result<(), ParquetError> {
    let mut c = next_column(rg)?;
    c.typed::<Int64Type>().write_batch(values, None, None)?;
    c.close()
}

fn put_opt_ints(rg: &mut RowGroup<'_>, col: &OptInt) -> Result<(), ParquetError> {
    let mut c = next_column(rg)?;
    c.typed::<Int64Type>()
        .write_batch(&col.values, Some(&col.def), None)?;
    c.close()
}

fn put_bools(rg: &mut RowGroup<'_>, values: &[bool]) -> Result<(), ParquetError> {
    let mut c = next_column(rg)?;
    c.typed::<BoolType>().write_batch(values, None, None)?;
    c.close()
}

/// Writes a text column, consuming its buffer. The values are slices of one shared buffer.
fn put_text(rg: &mut RowGroup<'_>, col: &mut OptText) -> Result<(), ParquetError> {
    let data = Bytes::from(std::mem::take(&mut col.data));
    let mut c = next_column(rg)?;
    let w = c.typed::<ByteArrayType>();
    let mut value = 0usize;
    let mut start = 0usize;
    let mut values = Vec::with_capacity(WRITE_CHUNK);
    for def in col.def.chunks(WRITE_CHUNK) {
        values.clear();
        let present = def.iter().filter(|d| **d != 0).count();
        for &end in &col.ends[value..value + present] {
            values.push(ByteArray::from(data.slice(start..end)));
            start = end;
        }
        value += present;
        w.write_batch(&values, Some(def), None)?;
    }
    c.close()
}

/// The `type` column, from the types' static names.
fn put_types(rg: &mut RowGroup<'_>, types: &[ObjType]) -> Result<(), ParquetError> {
    let mut c = next_column(rg)?;
    let w = c.typed::<ByteArrayType>();
    for chunk in types.chunks(WRITE_CHUNK) {
        let values: Vec<ByteArray> = chunk
            .iter()
            .map(|t| ByteArray::from(Bytes::from_static(t.name().as_bytes())))
            .collect();
        w.write_batch(&values, None, None)?;
    }
    c.close()
}

/// Rows buffered for the next row group of one table.
trait Columns: Default + Send {
    fn rows(&self) -> usize;
    fn text_bytes(&self) -> usize;
    /// Writes every column, in the schema's order, and empties the buffers.
    fn write(&mut self, rg: &mut RowGroup<'_>) -> Result<(), ParquetError>;
}

#[derive(Default)]
struct ObjectColumns {
    address: Vec<i64>,
    ty: Vec<ObjType>,
    class: OptInt,
    class_name: OptText,
    memsize: Vec<i64>,
    file: OptText,
    line: OptInt,
    method: OptText,
    generation: OptInt,
    name: OptText,
    value: OptText,
    bytesize: OptInt,
    length: OptInt,
    size: OptInt,
    imemo_type: OptText,
    struct_name: OptText,
    shape_id: OptInt,
    slot_size: OptInt,
    frozen: Vec<bool>,
    old: Vec<bool>,
    invalid_json: Vec<bool>,
}

impl ObjectColumns {
    fn push(&mut self, b: &Batch<'_>, o: &ObjectRow<'_>) {
        self.address.push(o.address);
        self.ty.push(o.ty);
        self.class.push(o.class);
        self.class_name.push(o.class_name);
        self.memsize.push(o.memsize);
        self.file.push(b.get(o.file));
        self.line.push(o.line);
        self.method.push(b.get(o.method));
        self.generation.push(o.generation);
        self.name.push(b.get(o.name));
        self.value.push(b.get(o.value));
        self.bytesize.push(o.bytesize);
        self.length.push(o.length);
        self.size.push(o.size);
        self.imemo_type.push(b.get(o.imemo_type));
        self.struct_name.push(b.get(o.struct_name));
        self.shape_id.push(o.shape_id);
        self.slot_size.push(o.slot_size);
        self.frozen.push(o.frozen);
        self.old.push(o.old);
        self.invalid_json.push(o.invalid_json);
    }
}

impl Columns for ObjectColumns {
    fn rows(&self) -> usize {
        self.address.len()
    }

    fn text_bytes(&self) -> usize {
        [
            &self.class_name,
            &self.file,
            &self.method,
            &self.name,
            &self.value,
            &self.imemo_type,
            &self.struct_name,
        ]
        .iter()
        .map(|c| c.data.len())
        .sum()
    }

    fn write(&mut self, rg: &mut RowGroup<'_>) -> Result<(), ParquetError> {
        put_ints(rg, &self.address)?;
        put_types(rg, &self.ty)?;
        put_opt_ints(rg, &self.class)?;
        put_text(rg, &mut self.class_name)?;
        put_ints(rg, &self.memsize)?;
        put_text(rg, &mut self.file)?;
        put_opt_ints(rg, &self.line)?;
        put_text(rg, &mut self.method)?;
        put_opt_ints(rg, &self.generation)?;
        put_text(rg, &mut self.name)?;
        put_text(rg, &mut self.value)?;
        put_opt_ints(rg, &self.bytesize)?;
        put_opt_ints(rg, &self.length)?;
        put_opt_ints(rg, &self.size)?;
        put_text(rg, &mut self.imemo_type)?;
        put_text(rg, &mut self.struct_name)?;
        put_opt_ints(rg, &self.shape_id)?;
        put_opt_ints(rg, &self.slot_size)?;
        put_bools(rg, &self.frozen)?;
        put_bools(rg, &self.old)?;
        put_bools(rg, &self.invalid_json)?;
        *self = ObjectColumns::default();
        Ok(())
    }
}

#[derive(Default)]
struct RefColumns {
    from: Vec<i64>,
    to: Vec<i64>,
}

impl Columns for RefColumns {
    fn rows(&self) -> usize {
        self.from.len()
    }

    fn text_bytes(&self) -> usize {
        0
    }

    fn write(&mut self, rg: &mut RowGroup<'_>) -> Result<(), ParquetError> {
        put_ints(rg, &self.from)?;
        put_ints(rg, &self.to)?;
        self.from.clear();
        self.to.clear();
        Ok(())
    }
}

#[derive(Default)]
struct RootColumns {
    root: OptText,
    address: Vec<i64>,
}

impl Columns for RootColumns {
    fn rows(&self) -> usize {
        self.address.len()
    }

    fn text_bytes(&self) -> usize {
        self.root.data.len()
    }

    fn write(&mut self, rg: &mut RowGroup<'_>) -> Result<(), ParquetError> {
        put_text(rg, &mut self.root)?;
        put_ints(rg, &self.address)?;
        *self = RootColumns::default();
        Ok(())
    }
}

/// One Parquet file being written: its temporary file, its writer, the next row group's rows.
struct Table<C: Columns> {
    file: TempFile,
    writer: FileWriter,
    cols: C,
}

impl<C: Columns> Table<C> {
    fn create(path: PathBuf, schema: &str, meta: Vec<KeyValue>) -> Result<Self, ImportError> {
        let (file, out) = TempFile::create(&path)?;
        let pq_err = |source| ImportError::Parquet {
            path: path.clone(),
            source,
        };
        let schema = Arc::new(parse_message_type(schema).map_err(pq_err)?);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).map_err(pq_err)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // Unique per object: a dictionary would only be built to be dropped.
            .set_column_dictionary_enabled(ColumnPath::from("address"), false)
            .set_key_value_metadata(Some(meta))
            .build();
        let writer = SerializedFileWriter::new(
            BufWriter::with_capacity(1 << 20, out),
            schema,
            Arc::new(props),
        )
        .map_err(pq_err)?;
        Ok(Table {
            file,
            writer,
            cols: C::default(),
        })
    }

    fn err(&self, source: ParquetError) -> ImportError {
        ImportError::Parquet {
            path: self.file.dest.clone(),
            source,
        }
    }

    fn flush_if_full(&mut self) -> Result<(), ImportError> {
        if self.cols.rows() >= ROW_GROUP_ROWS || self.cols.text_bytes() >= ROW_GROUP_TEXT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ImportError> {
        if self.cols.rows() == 0 {
            return Ok(());
        }
        let written = (|| {
            let mut rg = self.writer.next_row_group()?;
            self.cols.write(&mut rg)?;
            rg.close().map(|_| ())
        })();
        written.map_err(|e| self.err(e))
    }

    /// Writes what is left and the footer, and syncs the file. Returns it, to be persisted.
    fn finish(mut self) -> Result<TempFile, ImportError> {
        self.flush()?;
        let Table { file, writer, .. } = self;
        let pq_err = |source| ImportError::Parquet {
            path: file.dest.clone(),
            source,
        };
        let buf = writer.into_inner().map_err(pq_err)?;
        let out = buf
            .into_inner()
            .map_err(|e| pq_err(ParquetError::External(Box::new(e.into_error()))))?;
        out.sync_all().map_err(io_err("sync", &file.dest))?;
        Ok(file)
    }
}

struct ParquetSink {
    objects: Table<ObjectColumns>,
    refs: Table<RefColumns>,
    roots: Table<RootColumns>,
    counts: Counts,
}

impl<'m> Sink<'m> for ParquetSink {
    fn write(&mut self, b: Batch<'m>) -> Result<(), ImportError> {
        for o in &b.objects {
            self.objects.cols.push(&b, o);
            self.objects.flush_if_full()?;
        }
        for &(from, to) in &b.refs {
            self.refs.cols.from.push(from);
            self.refs.cols.to.push(to);
        }
        self.refs.flush_if_full()?;
        for &(root, address) in &b.roots {
            self.roots.cols.root.push(b.get(root));
            self.roots.cols.address.push(address);
        }
        self.roots.flush_if_full()?;
        self.counts.objects += b.objects.len() as u64;
        self.counts.refs += b.refs.len() as u64;
        self.counts.roots += b.roots.len() as u64;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Output files.

/// A file written under a temporary name next to its destination, removed unless persisted.
struct TempFile {
    tmp: PathBuf,
    dest: PathBuf,
    persisted: bool,
}

impl TempFile {
    /// Creates `dest.tmp-PID` (mode 0600) after checking that `dest` does not exist.
    fn create(dest: &Path) -> Result<(TempFile, File), ImportError> {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(ImportError::Exists {
                path: dest.to_path_buf(),
            });
        }
        let Some(file_name) = dest.file_name() else {
            return Err(ImportError::Io {
                action: "write to",
                path: dest.to_path_buf(),
                source: io::Error::other("the output path must name a file"),
            });
        };
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(ImportError::NoDir {
                dir: dir.to_path_buf(),
            });
        }
        let mut tmp_name = file_name.to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ImportError::Exists { path: tmp });
            }
            Err(e) => return Err(io_err("create", &tmp)(e)),
        };
        let temp = TempFile {
            tmp,
            dest: dest.to_path_buf(),
            persisted: false,
        };
        Ok((temp, file))
    }

    fn path(&self) -> &Path {
        &self.tmp
    }

    /// Gives the file its final name, never replacing a file that appeared there meanwhile.
    fn persist(mut self) -> Result<(), ImportError> {
        File::open(&self.tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", &self.tmp))?;
        self.link()?;
        self.persisted = true;
        let _ = fs::remove_file(&self.tmp);
        self.sync_dir();
        Ok(())
    }

    /// Makes the new name durable (best effort: not every file system allows it).
    fn sync_dir(&self) {
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
    }

    /// Persists every file or none.
    fn persist_all<const N: usize>(files: [TempFile; N]) -> Result<(), ImportError> {
        let mut linked: Vec<&Path> = Vec::with_capacity(N);
        for f in &files {
            if let Err(e) = f.link() {
                for dest in linked {
                    let _ = fs::remove_file(dest);
                }
                return Err(e);
            }
            linked.push(&f.dest);
        }
        for mut f in files {
            f.persisted = true;
            let _ = fs::remove_file(&f.tmp);
            f.sync_dir();
        }
        Ok(())
    }

    /// A hard link fails if the destination exists, where a rename would replace it.
    fn link(&self) -> Result<(), ImportError> {
        match fs::hard_link(&self.tmp, &self.dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ImportError::Exists {
                path: self.dest.clone(),
            }),
            // File systems without hard links: check, then rename.
            Err(_) => {
                if fs::symlink_metadata(&self.dest).is_ok() {
                    return Err(ImportError::Exists {
                        path: self.dest.clone(),
                    });
                }
                fs::rename(&self.tmp, &self.dest).map_err(io_err("rename to", &self.dest))
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ruby-3.1.2.json.gz"
    );
    const QUOTED: &str = r#"a string with "quotes" and \ backslash"#;

    fn opts(jobs: usize) -> ScanOptions<'static> {
        ScanOptions {
            jobs,
            progress: None,
            allow_truncated: false,
        }
    }

    /// References of objects and of roots, counted independently of the importer.
    fn reference_counts(dump: &Dump) -> (u64, u64) {
        let (counts, _) = dump
            .fold(
                opts(2),
                || (0u64, 0u64),
                |(refs, roots), _, rec| {
                    let n = rec.references.iter().count() as u64;
                    match rec.kind {
                        RecordKind::Object => *refs += n,
                        RecordKind::Root => *roots += n,
                        RecordKind::Shape => {}
                    }
                },
            )
            .unwrap();
        counts
            .into_iter()
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Files left in a directory (to catch temporary files).
    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn import_sqlite_of_the_ruby_3_1_fixture() {
        let dump = Dump::open(Path::new(FIXTURE)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("heap.db");
        let stats = import_sqlite(&dump, opts(2), &out).unwrap();
        assert_eq!(listing(dir.path()), vec!["heap.db"]);
        let mode = fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");

        let (refs, roots) = reference_counts(&dump);
        assert_eq!(stats.scan.lines, 17_244);
        assert_eq!(stats.scan.invalid_json, 92);
        assert_eq!(stats.objects, stats.scan.objects);
        assert_eq!((stats.refs, stats.roots), (refs, roots));
        assert_eq!(stats.rows(), stats.objects + refs + roots);
        assert!(stats.rows_per_sec() > 0.0);

        let conn = Connection::open(&out).unwrap();
        let objects = count(&conn, "SELECT count(*) FROM objects");
        assert_eq!(objects as u64, stats.scan.objects);
        assert_eq!(objects, 17_244 - 4);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM objects WHERE class_name = 'Foo'"
            ),
            3
        );
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM objects WHERE class_name = 'Deep::Nested'"
            ),
            5
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM refs") as u64, refs);
        assert_eq!(count(&conn, "SELECT count(*) FROM roots") as u64, roots);
        for root in ["vm", "global_tbl"] {
            let n: i64 = conn
                .query_row("SELECT count(*) FROM roots WHERE root = ?1", [root], |r| {
                    r.get(0)
                })
                .unwrap();
            assert!(n > 0, "no {root} roots");
        }
        assert_eq!(
            count(&conn, "SELECT count(*) FROM objects WHERE invalid_json"),
            92
        );
        let meta: String = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'invalid_json'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(meta, "92");
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM objects WHERE type = 'STRING' AND value = ?1",
                [QUOTED],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
        // Unescaped-field recovery: the folder's quote is kept in `file`.
        assert!(
            count(
                &conn,
                r#"SELECT count(*) FROM objects WHERE file = 'we"ird dir/sample.rb'"#
            ) > 0
        );
        // IMEMO records (junk or owner `class` on 3.1) get no class name.
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM objects WHERE type = 'IMEMO' AND class_name IS NOT NULL"
            ),
            0
        );
        // Who refers to the Foo instances: a join on refs through the index.
        let referrers = count(
            &conn,
            "SELECT count(DISTINCT r.from_address) FROM objects o \
             JOIN refs r ON r.to_address = o.address WHERE o.class_name = 'Foo'",
        );
        assert!(referrers > 0);
        let hex: String = conn
            .query_row(
                "SELECT printf('0x%x', address) FROM objects WHERE class_name = 'Foo' \
                 ORDER BY address LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(hex.starts_with("0x7ff3"), "{hex}");
        let indexes = count(
            &conn,
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'",
        );
        assert_eq!(indexes, 4);
    }

    #[test]
    fn import_sqlite_refuses_an_existing_file_and_leaves_it_untouched() {
        let dump = Dump::open(Path::new(FIXTURE)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("heap.db");
        fs::write(&out, b"precious").unwrap();
        let e = import_sqlite(&dump, opts(2), &out).unwrap_err();
        assert!(matches!(e, ImportError::Exists { .. }), "{e}");
        assert!(
            e.to_string().contains("remove it or choose another path"),
            "{e}"
        );
        assert_eq!(fs::read(&out).unwrap(), b"precious");
        assert_eq!(listing(dir.path()), vec!["heap.db"]);
        let e = import_sqlite(&dump, opts(2), &dir.path().join("no/such/dir/heap.db")).unwrap_err();
        assert!(matches!(e, ImportError::NoDir { .. }), "{e}");
    }

    fn parquet_rows(path: &Path) -> (Vec<parquet::record::Row>, usize) {
        let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
        let groups = reader.metadata().num_row_groups();
        let rows = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        (rows, groups)
    }

    fn field<'r>(row: &'r parquet::record::Row, name: &str) -> &'r Field {
        row.get_column_iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, f)| f)
            .unwrap()
    }

    fn is_str(f: &Field, s: &str) -> bool {
        matches!(f, Field::Str(v) if v == s)
    }

    #[test]
    fn import_parquet_of_the_ruby_3_1_fixture() {
        let dump = Dump::open(Path::new(FIXTURE)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tables");
        let stats = import_parquet(&dump, opts(2), &out).unwrap();
        assert_eq!(
            listing(&out),
            vec!["objects.parquet", "refs.parquet", "roots.parquet"]
        );
        for f in listing(&out) {
            let mode = fs::metadata(out.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let (refs, roots) = reference_counts(&dump);
        assert_eq!(stats.objects, stats.scan.objects);
        assert_eq!((stats.refs, stats.roots), (refs, roots));

        let (objects, groups) = parquet_rows(&out.join("objects.parquet"));
        assert_eq!(objects.len() as u64, stats.scan.objects);
        assert!(groups > 1, "the fixture spans several row groups in tests");
        let class_count = |name: &str| {
            objects
                .iter()
                .filter(|r| is_str(field(r, "class_name"), name))
                .count()
        };
        assert_eq!(class_count("Foo"), 3);
        assert_eq!(class_count("Deep::Nested"), 5);
        assert_eq!(
            objects
                .iter()
                .filter(|r| matches!(field(r, "invalid_json"), Field::Bool(true)))
                .count(),
            92
        );
        assert_eq!(
            objects
                .iter()
                .filter(|r| is_str(field(r, "value"), QUOTED))
                .count(),
            1
        );
        let foo = objects
            .iter()
            .find(|r| is_str(field(r, "class_name"), "Foo"))
            .unwrap();
        assert!(is_str(field(foo, "type"), "OBJECT"));
        assert!(matches!(field(foo, "address"), Field::Long(a) if *a > 0));
        assert!(matches!(field(foo, "line"), Field::Long(6)));
        assert!(matches!(field(foo, "size"), Field::Null));

        let (ref_rows, _) = parquet_rows(&out.join("refs.parquet"));
        assert_eq!(ref_rows.len() as u64, refs);
        let (root_rows, _) = parquet_rows(&out.join("roots.parquet"));
        assert_eq!(root_rows.len() as u64, roots);
        for root in ["vm", "global_tbl"] {
            assert!(root_rows.iter().any(|r| is_str(field(r, "root"), root)));
        }
    }

    #[test]
    fn import_parquet_refuses_existing_files() {
        let dump = Dump::open(Path::new(FIXTURE)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("refs.parquet"), b"precious").unwrap();
        let e = import_parquet(&dump, opts(2), dir.path()).unwrap_err();
        assert!(
            matches!(&e, ImportError::Exists { path } if path.ends_with("refs.parquet")),
            "{e}"
        );
        assert_eq!(listing(dir.path()), vec!["refs.parquet"]);
        assert_eq!(
            fs::read(dir.path().join("refs.parquet")).unwrap(),
            b"precious"
        );
    }

    /// Instances before their class, an IMEMO pointing at a class, a root, a shape.
    const SMALL: &str = concat!(
        "{\"type\":\"ROOT\", \"root\":\"vm\", \"references\":[\"0x10\", \"0x10\"]}\n",
        "{\"address\":\"0x7f00\", \"type\":\"SHAPE\", \"id\":1, \"shape_type\":\"ROOT\"}\n",
        "{\"address\":\"0x10\", \"type\":\"OBJECT\", \"class\":\"0x30\", \"ivars\":1, \"references\":[\"0x18\", \"0x18\"], \"memsize\":40, \"flags\":{\"old\":true}}\n",
        "{\"address\":\"0x18\", \"type\":\"STRING\", \"class\":\"0x38\", \"frozen\":true, \"bytesize\":2, \"value\":\"h\\u00e9\", \"memsize\":40}\n",
        "{\"address\":\"0x20\", \"type\":\"IMEMO\", \"class\":\"0x30\", \"imemo_type\":\"ment\", \"memsize\":40}\n",
        "{\"address\":\"0x30\", \"type\":\"CLASS\", \"class\":\"0x40\", \"name\":\"Late\", \"references\":[\"0x40\"], \"memsize\":500}\n",
        "{\"address\":\"0x40\", \"type\":\"CLASS\", \"real_class_name\":\"Class\", \"singleton\":true, \"memsize\":400}\n",
        "{\"address\":\"0x7fffffffffffffff\", \"type\":\"DATA\", \"struct\":\"my\"struct\", \"memsize\":40}\n",
    );

    fn small_dump(dir: &Path, name: &str, text: &str) -> Dump {
        let p = dir.join(name);
        File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        Dump::open(&p).unwrap()
    }

    #[test]
    fn class_names_resolve_whatever_the_order_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let dump = small_dump(dir.path(), "small.json", SMALL);
        for jobs in [1, 3] {
            let db = dir.path().join(format!("small{jobs}.db"));
            let stats = import_sqlite(&dump, opts(jobs), &db).unwrap();
            assert_eq!(
                (stats.objects, stats.refs, stats.roots, stats.shapes),
                (6, 3, 2, 1)
            );
            assert_eq!(stats.scan.invalid_json, 1);
            let conn = Connection::open(&db).unwrap();
            let rows: Vec<(String, Option<String>, Option<String>)> = conn
                .prepare("SELECT printf('0x%x', address), class_name, name FROM objects ORDER BY address")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            let s = |v: &str| Some(v.to_string());
            assert_eq!(
                rows,
                vec![
                    ("0x10".into(), s("Late"), None),
                    ("0x18".into(), None, None),
                    ("0x20".into(), None, None),
                    ("0x30".into(), s("Class"), s("Late")),
                    ("0x40".into(), None, s("Class")),
                    ("0x7fffffffffffffff".into(), None, None),
                ]
            );
            let value: String = conn
                .query_row("SELECT value FROM objects WHERE type = 'STRING'", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(value, "hé");
            let st: String = conn
                .query_row("SELECT struct FROM objects WHERE type = 'DATA'", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(st, r#"my"struct"#);
            assert_eq!(
                count(
                    &conn,
                    "SELECT count(*) FROM objects WHERE frozen AND NOT old"
                ),
                1
            );
            assert_eq!(count(&conn, "SELECT count(*) FROM objects WHERE old"), 1);
        }
        let pq = dir.path().join("pq");
        let stats = import_parquet(&dump, opts(3), &pq).unwrap();
        assert_eq!((stats.objects, stats.refs, stats.roots), (6, 3, 2));
        let (rows, _) = parquet_rows(&pq.join("objects.parquet"));
        let late = rows
            .iter()
            .find(|r| matches!(field(r, "address"), Field::Long(0x10)))
            .unwrap();
        assert!(is_str(field(late, "class_name"), "Late"));
        let imemo = rows
            .iter()
            .find(|r| matches!(field(r, "address"), Field::Long(0x20)))
            .unwrap();
        assert!(matches!(field(imemo, "class_name"), Field::Null));
        assert!(matches!(field(imemo, "class"), Field::Long(0x30)));
    }

    /// Takes one batch, then fails as a full disk would.
    struct FailingSink(usize);

    impl<'m> Sink<'m> for FailingSink {
        fn write(&mut self, _: Batch<'m>) -> Result<(), ImportError> {
            self.0 += 1;
            if self.0 < 2 {
                return Ok(());
            }
            Err(ImportError::Io {
                action: "write to",
                path: "the sink".into(),
                source: io::Error::from(io::ErrorKind::StorageFull),
            })
        }
    }

    #[test]
    fn a_failing_writer_stops_the_load_without_hanging() {
        let dump = Dump::open(Path::new(FIXTURE)).unwrap();
        let names = class_names(&dump, opts(2)).unwrap();
        for jobs in [1, 2, 4] {
            let e = load(&dump, opts(jobs), &names, FailingSink(0))
                .err()
                .unwrap();
            assert!(matches!(e, ImportError::Io { .. }), "{e}");
        }
    }

    #[test]
    fn a_failed_import_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The last record is cut: the dump is refused (without --allow-truncated).
        let cut = &SMALL[..SMALL.len() - 20];
        let dump = small_dump(dir.path(), "cut.json", cut);
        let e = import_sqlite(&dump, opts(2), &dir.path().join("heap.db")).unwrap_err();
        assert!(
            matches!(e, ImportError::Heap(HeapError::Truncated { .. })),
            "{e}"
        );
        let e = import_parquet(&dump, opts(2), &dir.path().join("pq")).unwrap_err();
        assert!(
            matches!(e, ImportError::Heap(HeapError::Truncated { .. })),
            "{e}"
        );
        assert_eq!(listing(dir.path()), vec!["cut.json"]);
        // With it, the complete records are imported.
        let allow = ScanOptions {
            allow_truncated: true,
            ..opts(2)
        };
        let stats = import_sqlite(&dump, allow, &dir.path().join("heap.db")).unwrap();
        assert_eq!(stats.objects, 5);
    }
}
