//! W1 scaled down (200,000 impressions) through the window join's operator core
//! (`weir-join-core`, RocksDB state): every impression comes out once, labelled by its
//! click, with the click delays summing to what the workload's definition gives.

use std::process::Command;

use weir_integration::binary;

#[test]
fn w1_impressions_come_out_once_with_the_clicks_of_their_window() {
    let out = Command::new(binary("weir-join-core"))
        .args(["--events", "200000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let info = stdout
        .lines()
        .find(|l| l.starts_with("INFO w1_core"))
        .expect("an INFO line");
    assert!(info.contains(" outputs=200000 "), "{info}");
    assert!(info.ends_with("ok=true"), "{info}");
}
