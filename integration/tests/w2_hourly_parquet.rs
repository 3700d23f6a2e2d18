//! W2 through `coordinator local`: 10M JSON log records -> filter -> hourly Parquet. The
//! output is checked against the workload's counters and, partition by partition, against
//! what DuckDB counts from the same input written out as JSON lines; pyarrow must read
//! every file and no in-progress file may remain.

use std::collections::BTreeMap;
use std::process::Command;

use weir_integration::{binary, files_below, parquet_rows_by_partition, python, run_local, workspace_root};

const EVENTS: u64 = 10_000_000;

#[test]
fn w2_lands_every_kept_row_in_its_hour_partition() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let run = run_local(
        &workspace_root().join("examples/w2-hourly-etl.json"),
        &[
            format!("sources.0.generator.events={EVENTS}"),
            format!("sinks.0.parquet.path={}", out.display()),
            // Small parts, so that rolling by size is exercised too.
            "sinks.0.parquet.max_file_bytes=4000000".into(),
        ],
        work.path(),
    )
    .unwrap();
    assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
    assert_eq!(run.sink()["rows"], 8_550_639);
    assert_eq!(run.sink()["partitions"], 29);
    assert_eq!(run.summary()["records_read"], EVENTS);
    assert_eq!(run.summary()["dead_lettered"], 0);

    let files = files_below(&out);
    let leftovers: Vec<_> = files
        .iter()
        .filter(|f| {
            f.file_name().unwrap().to_string_lossy().starts_with('.') || f.to_string_lossy().contains("inprogress")
        })
        .collect();
    assert!(leftovers.is_empty(), "in-progress files left: {leftovers:?}");
    assert!(
        files.len() > 29,
        "expected size-based rolling to make more than one file per hour"
    );

    let by_partition = parquet_rows_by_partition(&out).unwrap();
    assert_eq!(by_partition.len(), 29);
    assert_eq!(by_partition.values().sum::<u64>(), 8_550_639);
    assert_eq!(by_partition.keys().next().unwrap(), "dt=2023-12-31/hour=23");

    // The same input as a file, counted independently by DuckDB.
    let input = work.path().join("w2.jsonl");
    let st = Command::new(binary("weir-datagen"))
        .args(["w2", "--events", &EVENTS.to_string(), "--out"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(st.success());
    let script = r#"
import sys, glob, os, duckdb, pyarrow.parquet as pq
inp, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute('SET enable_progress_bar = false')
rows = con.execute(f"""
  SELECT strftime(make_timestamp(ts * 1000), 'dt=%Y-%m-%d/hour=%H') AS p, count(*)
  FROM read_json('{inp}', format='newline_delimited', columns={{ts:'BIGINT', level:'VARCHAR', path:'VARCHAR'}})
  WHERE level <> 'DEBUG' AND path <> '/healthz' GROUP BY p ORDER BY p""").fetchall()
for p, n in rows:
    print(f"input {p} {n}")
files = sorted(glob.glob(os.path.join(out, '**', '*.parquet'), recursive=True))
total = sum(pq.read_table(f).num_rows for f in files)
print(f"pyarrow_rows {total}")
misplaced = con.execute(f"""
  SELECT count(*) FROM read_parquet('{out}/**/*.parquet', filename=true, hive_partitioning=false)
  WHERE strpos(filename, strftime(make_timestamp(epoch_ms(ts) * 1000), 'dt=%Y-%m-%d/hour=%H')) = 0""").fetchone()[0]
print(f"misplaced {misplaced}")
"#;
    let report = python(script, &[input.to_str().unwrap(), out.to_str().unwrap()]).unwrap();
    let mut expected = BTreeMap::new();
    for line in report.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts[..] {
            ["input", p, n] => {
                expected.insert(p.to_string(), n.parse::<u64>().unwrap());
            }
            ["pyarrow_rows", n] => assert_eq!(n.parse::<u64>().unwrap(), 8_550_639),
            ["misplaced", n] => assert_eq!(n, "0", "rows written into the wrong hour"),
            _ => panic!("unexpected line {line}"),
        }
    }
    assert_eq!(by_partition, expected);
}
