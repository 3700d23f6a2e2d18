//! The web console end to end in a real browser (headless Chromium through ChromeDriver):
//! a cluster with a token (one coordinator, two task managers) and a real broker; the
//! test signs in (a wrong token first), submits a Kafka job from the console's form, and
//! watches its page: the job graph with its three vertices and two edges and moving
//! record rates, the source partitions with their watermarks (the partition that runs
//! ahead shown throttled by watermark alignment), the checkpoint history and the task
//! managers with their slots; then it cancels the job from the page.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir_integration::cluster::{ClusterSandbox, first_line};
use weir_integration::kafka_broker::{KafkaBroker, produce};
use weir_integration::webdriver::Browser;

const T0: i64 = 1_704_067_200_000;
const AHEAD: i64 = 20 * 60_000;

fn record(partition: i32, i: i64) -> (i32, Vec<u8>) {
    let ts = T0 + i * 50 + if partition == 0 { AHEAD } else { 0 };
    (
        partition,
        format!(r#"{{"id":{i},"ts":{ts},"user_id":{}}}"#, i % 100).into_bytes(),
    )
}

fn spec(broker: &str, out: &std::path::Path) -> serde_json::Value {
    serde_json::json!({
        "name": "console-demo",
        "parallelism": 2,
        "sources": [{
            "id": "events",
            "kafka": {"bootstrap_servers": broker, "topics": ["events"], "start": "earliest", "batch_size": 500},
            "format": {"type": "json"},
            "schema": [
                {"name": "id", "type": "int64"},
                {"name": "ts", "type": "timestamp_ms"},
                {"name": "user_id", "type": "int64"}
            ],
            "event_time": {
                "column": "ts",
                "max_out_of_orderness_ms": 1000,
                "alignment": {"group": "events", "max_drift_ms": 60_000}
            }
        }],
        "operators": [{"id": "recent", "input": "events", "filter": "user_id <> 7"}],
        "sinks": [{
            "id": "hourly",
            "input": "recent",
            "parallelism": 1,
            "parquet": {"path": out, "partition": "dt=%Y-%m-%d/hour=%H", "commit": {}}
        }],
        "checkpoint": {"interval_ms": 500}
    })
}

/// Runs `script` (returning a number) until it returns more than zero.
fn wait_positive(browser: &Browser, what: &str, script: &str) -> f64 {
    browser
        .wait_for(what, Duration::from_secs(60), |b| {
            Ok(b.execute(script)?.as_f64().filter(|v| *v > 0.0))
        })
        .unwrap()
}

#[test]
fn the_console_shows_a_running_job_and_cancels_it() {
    let secrets = tempfile::tempdir().unwrap();
    let tokens = secrets.path().join("tokens");
    std::fs::write(&tokens, "console-t0ken\n").unwrap();
    let mut cluster = ClusterSandbox::start_with_env(1, &[], &[("WEIR_TOKEN_FILE", tokens.to_str().unwrap())]);
    let broker = KafkaBroker::start(&cluster.dir.path().join("kafka")).unwrap();
    broker.create_topic("events", 2).unwrap();
    cluster.start_task_manager(2);
    cluster.start_task_manager(2);
    cluster.wait_for_task_managers(2, Duration::from_secs(30));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, address) = (stop.clone(), broker.address.clone());
        std::thread::spawn(move || {
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (next..next + 1000).flat_map(|i| [record(0, i), record(1, i)]).collect();
                produce(&address, "events", &batch).unwrap();
                next += 1000;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let browser = Browser::start().unwrap();
    let console = format!("http://{}/", cluster.coordinators[0].http_address);
    browser.goto(&console).unwrap();
    assert!(
        browser.current_url().unwrap().ends_with("/login"),
        "signed out: the login page"
    );
    let sign_in = |token: &str| {
        let field = browser.find("#token").unwrap().expect("the token field");
        browser.type_text(&field, token).unwrap();
        browser.click(&browser.find("#sign-in").unwrap().unwrap()).unwrap();
    };
    sign_in("not-the-token");
    browser
        .wait_for("the refusal", Duration::from_secs(10), |b| {
            Ok(b.find(".error")?
                .map(|e| b.text(&e))
                .transpose()?
                .filter(|t| t.contains("not valid")))
        })
        .unwrap();
    sign_in("console-t0ken");
    browser
        .wait_for("the task managers", Duration::from_secs(20), |b| {
            let rows = b.execute("return document.querySelectorAll('#task-managers tbody tr').length")?;
            Ok((rows.as_u64() == Some(2)).then_some(()))
        })
        .unwrap();

    // Submit through the form.
    let out = cluster.dir.path().join("out");
    browser
        .click(&browser.find("#submit-panel summary").unwrap().unwrap())
        .unwrap();
    browser
        .execute(&format!(
            "document.querySelector('#spec').value = {}; return true",
            serde_json::Value::String(spec(&broker.address, &out).to_string())
        ))
        .unwrap();
    browser.click(&browser.find("#submit").unwrap().unwrap()).unwrap();
    let job = browser
        .wait_for("the job page", Duration::from_secs(20), |b| {
            let url = b.current_url()?;
            Ok(url.split_once("#/jobs/").map(|(_, id)| id.to_string()))
        })
        .unwrap();

    // The graph: three vertices, two edges, records flowing through the source.
    wait_positive(
        &browser,
        "records flowing out of the source",
        "const t = document.querySelector('#graph g.vertex[data-vertex=\"events\"] text.rates'); \
         return t ? Number(t.getAttribute('data-out')) : 0",
    );
    let shape = browser
        .execute(
            "return [document.querySelectorAll('#graph g.vertex').length, \
             document.querySelectorAll('#graph path.edge').length]",
        )
        .unwrap();
    assert_eq!(shape, serde_json::json!([3, 2]), "the graph events -> recent -> hourly");
    wait_positive(
        &browser,
        "records written by the sink",
        "const r = document.querySelector('#vertices tr[data-vertex=\"hourly\"] td.in-rate'); \
         return r ? parseFloat(r.textContent) || 0 : 0",
    );
    // Source partitions: both, with watermarks; the one running ahead is throttled.
    browser
        .wait_for("both partitions with watermarks", Duration::from_secs(30), |b| {
            let v = b.execute(
                "return [...document.querySelectorAll('#partitions tbody tr')] \
                 .filter(r => /^2024-01-01/.test(r.children[3].textContent)).length",
            )?;
            Ok((v.as_u64() == Some(2)).then_some(()))
        })
        .unwrap();
    let throttled = browser
        .wait_for("a throttled partition", Duration::from_secs(30), |b| {
            let v = b.execute(
                "const r = document.querySelector('#partitions tr.throttled'); return r ? r.dataset.partition : null",
            )?;
            Ok(v.as_str().map(str::to_string))
        })
        .unwrap();
    assert_eq!(throttled, "events/0", "partition 0 runs ahead");
    wait_positive(
        &browser,
        "completed checkpoints",
        "return document.querySelectorAll('#checkpoints tbody tr').length",
    );
    let state = browser.text(&browser.find("#job-state").unwrap().unwrap()).unwrap();
    assert_eq!(state, "RUNNING");
    // What the page looked like, for whoever reads a failure (WEIR_CONSOLE_SCREENSHOT
    // keeps it where asked).
    let shot = std::env::var_os("WEIR_CONSOLE_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cluster.dir.path().join("console.png"));
    browser.screenshot(&shot).unwrap();

    // Cancel from the page.
    browser.click(&browser.find("#cancel").unwrap().unwrap()).unwrap();
    browser.accept_alert().unwrap();
    browser
        .wait_for("the cancelled state", Duration::from_secs(30), |b| {
            Ok(b.find("#job-state")?
                .map(|e| b.text(&e))
                .transpose()?
                .filter(|t| t == "CANCELLED"))
        })
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    let status = cluster.job_status(&cluster.addresses(), &job);
    assert!(first_line(&status).contains("Cancelled"), "{status}");
}
