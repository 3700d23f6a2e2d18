//! The JSON Schema published in `docs/` must be the one the code accepts.

#[test]
fn published_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/job-spec.schema.json");
    let published = std::fs::read_to_string(path).expect("docs/job-spec.schema.json");
    assert_eq!(
        published.trim(),
        weir_common::spec::json_schema().trim(),
        "regenerate it: coordinator schema > docs/job-spec.schema.json"
    );
}
