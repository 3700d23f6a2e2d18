//! Helpers shared by Weir's process-level tests and benchmarks: find the built binaries,
//! run `coordinator local` on a spec with overrides, and read what it produced.

pub mod ad_joiner_dims;
pub mod cluster;
pub mod http_get;
pub mod kafka_broker;
pub mod mock_kafka;
pub mod redis_server;
pub mod test_certs;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// The workspace root (where `examples/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A binary built from this workspace, in the same profile directory as the running
/// executable (tests live in `<target>/<profile>/deps/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the workspace binaries first (cargo build --release --workspace --bins)",
        path.display()
    );
    path
}

/// A finished `coordinator local` run.
pub struct LocalRun {
    pub output: Output,
    pub summary: Option<serde_json::Value>,
}

impl LocalRun {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn summary(&self) -> &serde_json::Value {
        self.summary
            .as_ref()
            .unwrap_or_else(|| panic!("no summary; stderr:\n{}", self.stderr()))
    }
    /// The first sink's summary.
    pub fn sink(&self) -> &serde_json::Value {
        &self.summary()["sinks"][0]
    }
}

/// Runs `coordinator local spec --set ...` in `work_dir` and collects its summary.
pub fn run_local(spec: &Path, overrides: &[String], work_dir: &Path) -> Result<LocalRun> {
    run_local_with(spec, overrides, &[], work_dir)
}

/// [`run_local`] with extra command-line arguments (`--task-managers 2`).
pub fn run_local_with(spec: &Path, overrides: &[String], args: &[&str], work_dir: &Path) -> Result<LocalRun> {
    let summary_path = work_dir.join("summary.json");
    let _ = std::fs::remove_file(&summary_path);
    let mut cmd = Command::new(binary("coordinator"));
    cmd.arg("local").arg(spec).arg("--progress-ms").arg("0");
    cmd.arg("--work-dir").arg(work_dir);
    cmd.arg("--summary-json").arg(&summary_path);
    for o in overrides {
        cmd.arg("--set").arg(o);
    }
    cmd.args(args);
    let output = cmd.output().context("running coordinator local")?;
    let summary = match std::fs::read_to_string(&summary_path) {
        Ok(text) => Some(serde_json::from_str(&text).context("parsing summary")?),
        Err(_) => None,
    };
    Ok(LocalRun { output, summary })
}

/// The sum of `column` a blackhole sink reported in a job summary (`column_sums`, sent
/// as a decimal string: the sums exceed i64).
pub fn column_sum(sink: &serde_json::Value, column: &str) -> Option<i128> {
    sink["column_sums"][column].as_str()?.parse().ok()
}

/// The seed of a randomized test: `WEIR_CHAOS_SEED` to replay a run, else the clock.
pub fn chaos_seed() -> u64 {
    std::env::var("WEIR_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs()
        })
}

/// Every file below `dir`, recursively, relative to it and sorted.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).expect("below root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Rows per partition directory, from the Parquet footers of the published files.
pub fn parquet_rows_by_partition(root: &Path) -> Result<std::collections::BTreeMap<String, u64>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut rows = std::collections::BTreeMap::new();
    for rel in files_below(root) {
        if rel.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let f = std::fs::File::open(root.join(&rel))?;
        let reader = SerializedFileReader::new(f).with_context(|| format!("reading {}", rel.display()))?;
        let n = reader.metadata().file_metadata().num_rows() as u64;
        let dir = rel.parent().map(|p| p.display().to_string()).unwrap_or_default();
        *rows.entry(dir).or_default() += n;
    }
    Ok(rows)
}

/// Every value of the int64 column `column` in the published Parquet files below `root`
/// (hidden files, `_SUCCESS` and the like are not read).
pub fn int64_values(root: &Path, column: &str) -> Result<Vec<i64>> {
    use arrow::array::{AsArray, RecordBatchReader};
    use arrow::datatypes::Int64Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut values = Vec::new();
    for rel in files_below(root) {
        let name = rel.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".parquet") {
            continue;
        }
        let f = std::fs::File::open(root.join(&rel))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .with_context(|| format!("reading {}", rel.display()))?
            .build()?;
        let col = reader.schema().index_of(column)?;
        for batch in reader {
            values.extend(batch?.column(col).as_primitive::<Int64Type>().values().iter().copied());
        }
    }
    Ok(values)
}

/// Runs a Python snippet with pyarrow/duckdb available (the test set-up installs them).
pub fn python(script: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .context("running python3")?;
    if !out.status.success() {
        bail!("python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Per partition directory under `root`: row count and the sum of DuckDB's hash over
/// `columns` (comma separated), one line each: equal fingerprints mean equal row
/// multisets per partition.
pub fn partition_fingerprint(root: &Path, columns: &str) -> Result<String> {
    let script = format!(
        r#"
import duckdb, os, sys
root = sys.argv[1]
rows = duckdb.sql(f"""
  select regexp_replace(filename, '/[^/]*$', '') as dir, count(*),
         sum(hash({columns}))::varchar
  from read_parquet('{{root}}/**/*.parquet', filename=true, hive_partitioning=false)
  group by dir order by dir""").fetchall()
for d, n, h in rows:
    print(os.path.relpath(d, root), n, h)
"#
    );
    python(&script, &[root.to_str().context("output path")?])
}

/// W2 (`examples/w2-hourly-etl.json`) with `events` events and a `key_by user_id` before
/// its sink, so that across task managers half of the rows cross the network; its Parquet
/// output goes to `out`.
pub fn keyed_w2_spec(events: u64, out: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(workspace_root().join("examples/w2-hourly-etl.json"))?;
    let mut spec: serde_json::Value = serde_json::from_str(&text)?;
    spec["sources"][0]["generator"]["events"] = events.into();
    spec["operators"]
        .as_array_mut()
        .context("operators")?
        .push(serde_json::json!({"id": "by_user", "input": "clean", "key_by": ["user_id"]}));
    spec["sinks"][0]["input"] = "by_user".into();
    spec["sinks"][0]["parquet"]["path"] = out.to_str().context("output path")?.into();
    Ok(spec)
}
