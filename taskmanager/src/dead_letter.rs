//! The dead-letter output: records that could not be decoded, written as JSON lines (one
//! object per record, with the reason and where it came from) by a dedicated thread, so a
//! bad record costs a channel send on the hot path and never stops the job.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use base64::Engine;
use serde::Serialize;

use crate::error::TaskError;

#[derive(Debug)]
pub struct DeadLetter {
    pub source: Arc<str>,
    pub subtask: u32,
    pub origin: Arc<str>,
    pub position: u64,
    pub reason: String,
    pub raw: Vec<u8>,
}

#[derive(Serialize)]
struct DeadLetterLine<'a> {
    source: &'a str,
    subtask: u32,
    origin: &'a str,
    position: u64,
    reason: &'a str,
    /// The record as text (invalid UTF-8 replaced).
    raw: std::borrow::Cow<'a, str>,
    /// The exact bytes, when they are not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
}

/// The sending side, cloned into every source subtask.
#[derive(Clone)]
pub struct DeadLetterQueue {
    tx: flume::Sender<DeadLetter>,
}

impl DeadLetterQueue {
    pub async fn send(&self, letter: DeadLetter) -> Result<(), TaskError> {
        self.tx
            .send_async(letter)
            .await
            .map_err(|_| TaskError::Disconnected("dead-letter writer".into()))
    }
}

/// The writing side: owns the file and the thread.
pub struct DeadLetterWriter {
    handle: JoinHandle<Result<u64, TaskError>>,
    path: PathBuf,
}

impl DeadLetterWriter {
    /// Starts the writer thread; the file `dir/<file_name>` is created on the first record.
    pub fn start(dir: &Path, file_name: &str) -> (DeadLetterQueue, DeadLetterWriter) {
        let (tx, rx) = flume::bounded::<DeadLetter>(1024);
        let path = dir.join(file_name);
        let thread_path = path.clone();
        let handle = std::thread::Builder::new()
            .name("dead-letter".into())
            .spawn(move || write_all(rx, &thread_path))
            .expect("spawn dead-letter thread");
        (DeadLetterQueue { tx }, DeadLetterWriter { handle, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until every queue clone is dropped and everything is on disk; returns the count.
    pub fn finish(self) -> Result<u64, TaskError> {
        self.handle
            .join()
            .map_err(|_| TaskError::Disconnected("dead-letter writer".into()))?
    }
}

fn write_all(rx: flume::Receiver<DeadLetter>, path: &Path) -> Result<u64, TaskError> {
    let mut out: Option<BufWriter<File>> = None;
    let mut count = 0u64;
    for letter in rx.iter() {
        let w = match &mut out {
            Some(w) => w,
            None => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(|e| TaskError::io("creating dead-letter directory", dir, e))?;
                }
                let f = File::create(path).map_err(|e| TaskError::io("creating dead-letter file", path, e))?;
                out.insert(BufWriter::new(f))
            }
        };
        let valid = std::str::from_utf8(&letter.raw).is_ok();
        let line = DeadLetterLine {
            source: &letter.source,
            subtask: letter.subtask,
            origin: &letter.origin,
            position: letter.position,
            reason: &letter.reason,
            raw: String::from_utf8_lossy(&letter.raw),
            raw_base64: (!valid).then(|| base64::engine::general_purpose::STANDARD.encode(&letter.raw)),
        };
        serde_json::to_writer(&mut *w, &line).map_err(|e| TaskError::io("writing dead letter", path, e.into()))?;
        w.write_all(b"\n")
            .map_err(|e| TaskError::io("writing dead letter", path, e))?;
        count += 1;
    }
    if let Some(mut w) = out {
        w.flush().map_err(|e| TaskError::io("flushing dead letters", path, e))?;
        w.get_ref()
            .sync_all()
            .map_err(|e| TaskError::io("syncing dead letters", path, e))?;
    }
    Ok(count)
}
