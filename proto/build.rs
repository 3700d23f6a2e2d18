//! Compiles the .proto files with the protoc that `protoc-bin-vendored` ships, unless a
//! `PROTOC` is given, so a fresh machine needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    println!("cargo:rerun-if-changed=proto");
    // The job API's messages are also the web console's JSON.
    tonic_prost_build::configure()
        .type_attribute(".weir.job.v1", "#[derive(serde::Serialize)]")
        .type_attribute(".weir.cluster.v1.TaskManagerInfo", "#[derive(serde::Serialize)]")
        .compile_protos(
            &[
                "proto/weir_job.proto",
                "proto/weir_raft.proto",
                "proto/weir_cluster.proto",
                "proto/weir_taskmanager.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
