//! The operators the benchmark workloads do not use, end to end through `coordinator
//! local`: the JSON-lines example (filter + project with SQL expressions, snappy Parquet,
//! read back by DuckDB), and `key_by` repartitioning between subtasks, which must not
//! change what lands in each hour.

use std::fs;

use weir_integration::{parquet_rows_by_partition, python, run_local, run_local_with, workspace_root};

#[test]
fn jsonl_example_filters_and_projects_with_sql() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    fs::create_dir_all(&input).unwrap();
    let mut expected = Vec::new();
    for (f, file) in ["2.jsonl", "1.jsonl"].iter().enumerate() {
        let mut text = String::new();
        for i in 0..500 {
            let ts = 1_704_067_200_000i64 + (f as i64 * 500 + i) * 7_919;
            let amount = (i % 40) as f64 * 0.75;
            text.push_str(&format!(
                r#"{{"ts":{ts},"user":"u{i}","amount":{amount},"ignored":true}}"#
            ));
            text.push('\n');
            if amount > 10.0 {
                expected.push((ts, (amount * 100.0) as i64));
            }
        }
        fs::write(input.join(file), text).unwrap();
    }
    expected.sort();
    let out = work.path().join("out");
    let run = run_local(
        &workspace_root().join("examples/jsonl-to-parquet.json"),
        &[
            format!("sources.0.file.path={}", input.display()),
            format!("sinks.0.parquet.path={}", out.display()),
            format!("dead_letter.path={}", work.path().join("dead").display()),
        ],
        work.path(),
    )
    .unwrap();
    assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
    assert_eq!(run.summary()["records_read"], 1000);
    assert_eq!(run.sink()["rows"], expected.len() as u64);

    let rows = python(
        r#"
import sys, duckdb
con = duckdb.connect()
con.execute('SET enable_progress_bar = false')
for ts, cents, cols in con.execute(f"""
    SELECT epoch_ms(ts), amount_cents, (SELECT count(*) FROM (DESCRIBE SELECT * FROM read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning=false)))
    FROM read_parquet('{sys.argv[1]}/**/*.parquet') ORDER BY 1""").fetchall():
    print(ts, cents, cols)
"#,
        &[out.to_str().unwrap()],
    )
    .unwrap();
    let got: Vec<(i64, i64)> = rows
        .lines()
        .map(|l| {
            let v: Vec<i64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert_eq!(v[2], 3, "columns ts, user, amount_cents");
            (v[0], v[1])
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn key_by_repartitions_without_changing_the_output() {
    let work = tempfile::tempdir().unwrap();
    let spec = workspace_root().join("examples/w2-hourly-etl.json");
    let mut text: serde_json::Value = serde_json::from_str(&fs::read_to_string(&spec).unwrap()).unwrap();
    text["operators"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"id": "by_service", "input": "clean", "key_by": ["service"], "parallelism": 3}));
    text["sinks"][0]["input"] = "by_service".into();
    text["sinks"][0]["parallelism"] = 3.into();
    let keyed_spec = work.path().join("keyed.json");
    fs::write(&keyed_spec, text.to_string()).unwrap();

    let mut results = Vec::new();
    // The keyed run spreads its subtasks over two task managers.
    for (name, spec, args) in [
        ("plain", &spec, &[][..]),
        ("keyed", &keyed_spec, &["--task-managers", "2"][..]),
    ] {
        let out = work.path().join(name);
        let run = run_local_with(
            spec,
            &[
                "sources.0.generator.events=1000000".into(),
                format!("sinks.0.parquet.path={}", out.display()),
            ],
            args,
            work.path(),
        )
        .unwrap();
        assert!(run.output.status.success(), "stderr:\n{}", run.stderr());
        results.push(parquet_rows_by_partition(&out).unwrap());
    }
    assert_eq!(results[0], results[1]);
    assert!(results[0].values().sum::<u64>() > 800_000);

    // Every service's rows sit in exactly one sink subtask's files.
    let owners = python(
        r#"
import sys, duckdb
con = duckdb.connect()
con.execute('SET enable_progress_bar = false')
print(con.execute(f"""
    SELECT max(n) FROM (SELECT service, count(DISTINCT regexp_extract(filename, 'part-[0-9a-f]+-([0-9]+)-', 1)) AS n
    FROM read_parquet('{sys.argv[1]}/**/*.parquet', filename=true) GROUP BY service)""").fetchone()[0])
"#,
        &[work.path().join("keyed").to_str().unwrap()],
    )
    .unwrap();
    assert_eq!(owners.trim(), "1");
}
