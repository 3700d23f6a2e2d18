//! The file I/O of a file sink, run on a dedicated thread: creating in-progress files,
//! appending the bytes the encoder produced, and publishing a finished file (fsync, rename
//! into place, fsync the directory). The encoder stays on the subtask's thread; only the
//! blocking system calls come here, in order, through a bounded channel.
//!
//! When the subtask is cancelled the thread stops at the next command, deletes the
//! in-progress files it holds and publishes nothing more, so a cancelled attempt leaves no
//! file appearing after its cancellation returned.
//!
//! Two-phase commit (jobs with checkpoints): a finished part is sealed (durable, still
//! hidden) instead of published; a checkpoint barrier n assigns the parts sealed before it
//! to checkpoint n by renaming them `.<name>_c<n>.parquet.pending`; when the checkpoint
//! completes, its parts (and those of earlier checkpoints) are renamed into place as
//! `<name>_c<n>.parquet`. At the end of input everything is published, parts sealed after
//! the last barrier as `<name>_end.parquet`. The names are what a restore goes by.

use std::collections::{BTreeMap, HashMap};
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
    /// Make file `id` durable under its hidden name `from`; publish it as `to` once a
    /// checkpoint covering it completes.
    Seal {
        id: u64,
        from: PathBuf,
        to: PathBuf,
    },
    /// Checkpoint barrier: the parts sealed so far belong to this checkpoint.
    Barrier(u64),
    /// The checkpoint completed: publish its parts and those of every earlier one.
    Commit(u64),
    /// End of input: publish every sealed part.
    CommitAll,
    /// Answers once every command before it is done.
    Sync(tokio::sync::oneshot::Sender<()>),
}

/// A sealed part: its hidden name and the name it is published under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SealedPart {
    from: PathBuf,
    to: PathBuf,
}

impl SealedPart {
    /// The final name with `tag` before `.parquet`: which checkpoint committed it.
    fn tagged(&self, tag: &str) -> PathBuf {
        let stem = self.to.file_stem().unwrap_or_default().to_string_lossy();
        self.to.with_file_name(format!("{stem}{tag}.parquet"))
    }
}

#[derive(Default)]
pub struct FileIo {
    /// Open files with their (in-progress) paths, for error messages.
    open: HashMap<u64, (File, PathBuf)>,
    /// Sealed parts not yet assigned to a checkpoint.
    sealed: Vec<SealedPart>,
    /// Sealed parts per checkpoint, waiting for it to complete.
    pending: BTreeMap<u64, Vec<SealedPart>>,
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
            FileCommand::Seal { id, from, to } => {
                let (f, _) = self.open.remove(&id).ok_or_else(|| unknown(id))?;
                f.sync_all().map_err(|e| TaskError::io("syncing part file", &from, e))?;
                if let Some(dir) = from.parent() {
                    sync_dir(dir)?;
                }
                self.sealed.push(SealedPart { from, to });
            }
            FileCommand::Barrier(checkpoint) => {
                let mut dirs = Vec::new();
                for part in std::mem::take(&mut self.sealed) {
                    let tagged = part.tagged(&format!("_c{checkpoint}"));
                    let pending = tagged.with_file_name(format!(
                        ".{}.pending",
                        tagged.file_name().unwrap_or_default().to_string_lossy()
                    ));
                    fs::rename(&part.from, &pending)
                        .map_err(|e| TaskError::io("marking part pending", &part.from, e))?;
                    if let Some(dir) = pending.parent()
                        && !dirs.contains(&dir.to_path_buf())
                    {
                        dirs.push(dir.to_path_buf());
                    }
                    self.pending.entry(checkpoint).or_default().push(SealedPart {
                        from: pending,
                        to: tagged,
                    });
                }
                for dir in dirs {
                    sync_dir(&dir)?;
                }
            }
            FileCommand::Commit(checkpoint) => {
                let later = self.pending.split_off(&(checkpoint + 1));
                let due = std::mem::replace(&mut self.pending, later);
                for part in due.into_values().flatten() {
                    publish(&part)?;
                }
            }
            FileCommand::CommitAll => {
                let pending = std::mem::take(&mut self.pending);
                let sealed = std::mem::take(&mut self.sealed).into_iter().map(|p| SealedPart {
                    to: p.tagged("_end"),
                    from: p.from,
                });
                for part in pending.into_values().flatten().chain(sealed) {
                    publish(&part)?;
                }
            }
            FileCommand::Sync(done) => {
                let _ = done.send(());
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

/// Renames a sealed part into place and makes the rename durable. A part already gone
/// was published by the leader's partition committer, which publishes the parts of a
/// completed checkpoint itself before it commits their partition.
fn publish(part: &SealedPart) -> Result<(), TaskError> {
    match fs::rename(&part.from, &part.to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TaskError::io("publishing part file", &part.from, e)),
    }
    match part.to.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

fn unknown(id: u64) -> TaskError {
    TaskError::Invalid {
        vertex: "file sink".into(),
        message: format!("write to file #{id}, which is not open"),
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), TaskError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TaskError::io("syncing partition directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::filesystem::test_files::names;

    #[test]
    fn sealed_parts_wait_for_their_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut io = FileIo::default();
        let part = |io: &mut FileIo, id: u64, name: &str| {
            io.apply(FileCommand::Create {
                id,
                path: d.join(format!(".{name}.parquet.inprogress")),
            })
            .unwrap();
            io.apply(FileCommand::Append {
                id,
                data: b"bytes".to_vec(),
            })
            .unwrap();
            io.apply(FileCommand::Seal {
                id,
                from: d.join(format!(".{name}.parquet.inprogress")),
                to: d.join(format!("{name}.parquet")),
            })
            .unwrap();
        };
        part(&mut io, 1, "a");
        io.apply(FileCommand::Barrier(7)).unwrap();
        part(&mut io, 2, "b");
        io.apply(FileCommand::Barrier(8)).unwrap();
        part(&mut io, 3, "c");
        assert_eq!(
            names(d),
            vec![
                ".a_c7.parquet.pending",
                ".b_c8.parquet.pending",
                ".c.parquet.inprogress"
            ]
        );
        io.apply(FileCommand::Commit(7)).unwrap();
        assert_eq!(
            names(d),
            vec![".b_c8.parquet.pending", ".c.parquet.inprogress", "a_c7.parquet"]
        );
        io.apply(FileCommand::Commit(7)).unwrap();
        io.apply(FileCommand::CommitAll).unwrap();
        assert_eq!(names(d), vec!["a_c7.parquet", "b_c8.parquet", "c_end.parquet"]);
        assert_eq!(fs::read(d.join("c_end.parquet")).unwrap(), b"bytes");
    }
}
