//! The file I/O of a file sink, run on a dedicated thread: creating in-progress files,
//! appending the bytes the encoder produced, and publishing a finished file (fsync, rename
//! into place, fsync the directory). The encoder stays on the subtask's thread; only the
//! blocking system calls come here, in order, through a bounded channel.
//!
//! When the subtask is cancelled the thread stops at the next command, deletes the
//! in-progress files it holds and publishes nothing more, so a cancelled attempt leaves no
//! file appearing after its cancellation returned.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::TaskError;

#[derive(Debug)]
pub enum FileCommand {
    /// Create `path` (and its directory) for file `id`.
    Create {
        id: u64,
        path: PathBuf,
    },
    Append {
        id: u64,
        data: Vec<u8>,
    },
    /// Make file `id` durable and rename it from `from` to `to`.
    Publish {
        id: u64,
        from: PathBuf,
        to: PathBuf,
    },
}

#[derive(Default)]
pub struct FileIo {
    /// Open files with their (in-progress) paths, for error messages.
    open: HashMap<u64, (File, PathBuf)>,
}

impl FileIo {
    pub fn apply(&mut self, cmd: FileCommand) -> Result<(), TaskError> {
        match cmd {
            FileCommand::Create { id, path } => {
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(|e| TaskError::io("creating partition directory", dir, e))?;
                }
                let f = File::create(&path).map_err(|e| TaskError::io("creating part file", &path, e))?;
                self.open.insert(id, (f, path));
            }
            FileCommand::Append { id, data } => {
                let (f, path) = self.open.get_mut(&id).ok_or_else(|| unknown(id))?;
                f.write_all(&data)
                    .map_err(|e| TaskError::io("writing part file", path.as_path(), e))?;
            }
            FileCommand::Publish { id, from, to } => {
                let (f, _) = self.open.remove(&id).ok_or_else(|| unknown(id))?;
                f.sync_all().map_err(|e| TaskError::io("syncing part file", &from, e))?;
                drop(f);
                fs::rename(&from, &to).map_err(|e| TaskError::io("publishing part file", &from, e))?;
                if let Some(dir) = to.parent() {
                    sync_dir(dir)?;
                }
            }
        }
        Ok(())
    }

    /// Runs commands until the channel closes, or until `abort` is set.
    pub fn run(mut self, rx: flume::Receiver<FileCommand>, abort: Arc<AtomicBool>) -> Result<(), TaskError> {
        for cmd in rx.iter() {
            if abort.load(Ordering::Acquire) {
                break;
            }
            self.apply(cmd)?;
        }
        if abort.load(Ordering::Acquire) {
            for (_, (file, path)) in self.open.drain() {
                drop(file);
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

fn unknown(id: u64) -> TaskError {
    TaskError::Invalid {
        vertex: "file sink".into(),
        message: format!("write to file #{id}, which is not open"),
    }
}

fn sync_dir(dir: &Path) -> Result<(), TaskError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TaskError::io("syncing partition directory", dir, e))
}
