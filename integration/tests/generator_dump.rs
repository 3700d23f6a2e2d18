//! The generators reproduce the reference workloads bit for bit: `weir-datagen dump 40`
//! must equal the reference dump (`tests/data/reference-dump-40.txt`, the output of
//! `shared/bench/limits` `limits dump 40`, which is byte-identical to Flink's
//! `bench.Main dump 40`).

use std::process::Command;

use weir_integration::binary;

#[test]
fn dump_matches_the_reference_byte_for_byte() {
    let out = Command::new(binary("weir-datagen"))
        .args(["dump", "40"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let reference = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/reference-dump-40.txt")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&reference)
    );
}
