//! The signals that stop a serving process (task manager or coordinator) gracefully:
//! SIGINT and SIGTERM (what systemd and Kubernetes send).

pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
