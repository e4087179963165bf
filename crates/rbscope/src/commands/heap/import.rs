//! Tables for SQL (`rbscope heap import`).

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::json;

use super::HeapRead;
use super::{num, open, print_json, warn_unreadable, Bar};
use crate::views::heap::scan_json;

/// Write the dump as tables for SQL: objects, refs (one row per reference), roots.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["sqlite", "parquet"])))]
pub struct Args {
    /// A heap dump: ObjectSpace.dump_all output (JSON lines; gzip or zstd work too).
    dump: PathBuf,
    /// A new SQLite database file (mode 0600).
    #[arg(long, value_name = "FILE")]
    sqlite: Option<PathBuf>,
    /// A directory for objects.parquet, refs.parquet and roots.parquet.
    #[arg(long, value_name = "DIR")]
    parquet: Option<PathBuf>,
    #[command(flatten)]
    read: HeapRead,
}

pub(super) fn run(a: &Args) -> anyhow::Result<i32> {
    import(&a.dump, a.sqlite.as_deref(), a.parquet.as_deref(), &a.read)
}

fn import(
    dump_path: &Path,
    sqlite: Option<&Path>,
    parquet: Option<&Path>,
    read: &HeapRead,
) -> anyhow::Result<i32> {
    let bar = Bar::start();
    let dump = open(dump_path)?;
    bar.phase("importing");
    let (stats, dest) = match (sqlite, parquet) {
        (Some(db), _) => (
            rbscope_heap::import::import_sqlite(&dump, bar.opts(read), db)?,
            db,
        ),
        (None, Some(dir)) => (
            rbscope_heap::import::import_parquet(&dump, bar.opts(read), dir)?,
            dir,
        ),
        (None, None) => bail!("say where to import to: --sqlite FILE or --parquet DIR"),
    };
    drop(bar);
    warn_unreadable(dump_path, &stats.scan);
    if read.json {
        return print_json(&json!({
            "to": dest.display().to_string(),
            "objects": stats.objects,
            "refs": stats.refs,
            "roots": stats.roots,
            "rows": stats.rows(),
            "seconds": stats.elapsed.as_secs_f64(),
            "rows_per_second": stats.rows_per_sec(),
            "scan": scan_json(&stats.scan),
        }));
    }
    println!(
        "{} -> {}: {} objects, {} refs, {} roots; {} rows in {:.2} s ({} rows/s)",
        dump_path.display(),
        dest.display(),
        num(stats.objects),
        num(stats.refs),
        num(stats.roots),
        num(stats.rows()),
        stats.elapsed.as_secs_f64(),
        num(stats.rows_per_sec() as u64)
    );
    Ok(0)
}
