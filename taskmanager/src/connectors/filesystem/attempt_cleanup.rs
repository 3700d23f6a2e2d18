//! Prepares a sink's directory tree for a new attempt of a job, going by the part names
//! `[.]part-<job id>.<attempt>-<subtask>-<seq>_<min>_<max>[_c<n>|_end].parquet[.pending]`
//! (hidden in-progress parts: `.part-<job id>.<attempt>-<subtask>-<seq>.parquet.inprogress`).
//! Each sink subtask handles the parts of its own subtask index, before it writes.
//!
//! - Without a checkpoint to restore, the attempt replays its input from the beginning,
//!   so every part of an earlier attempt would be a duplicate: all are deleted.
//! - Restoring checkpoint n taken by attempt a, the sources resume where n recorded them.
//!   What n covers stays: parts of attempts before a, and parts attempt a committed with
//!   checkpoints up to n; parts attempt a sealed for checkpoints up to n but had not yet
//!   published are published now. Everything else of earlier attempts (later checkpoints,
//!   parts published at the end of input, attempts after a, in-progress parts) came after
//!   n and is deleted: the restored attempt writes it again.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::file_io::sync_dir;
use crate::error::TaskError;

/// The checkpoint an attempt restores: which attempt took it, and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestorePoint {
    pub attempt: u32,
    pub checkpoint: u64,
}

/// What preparing the directory did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    pub removed: u64,
    pub published: u64,
}

enum Verdict {
    Keep,
    Remove,
    Publish(PathBuf),
}

/// Prepares `root` for attempt `attempt` of `job_id`'s sink subtask `subtask`.
pub fn prepare_for_attempt(
    root: &Path,
    job_id: &str,
    attempt: u32,
    subtask: u32,
    restore: Option<RestorePoint>,
) -> Result<Prepared, TaskError> {
    let mut done = Prepared::default();
    if attempt == 0 {
        return Ok(done);
    }
    let prefix = format!("part-{job_id}.");
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(TaskError::io("listing sink directory", &dir, e)),
        };
        let mut published_here = false;
        for entry in entries {
            let entry = entry.map_err(|e| TaskError::io("listing sink directory", &dir, e))?;
            let path = entry.path();
            let is_dir = entry
                .file_type()
                .map_err(|e| TaskError::io("reading file type of", &path, e))?
                .is_dir();
            if is_dir {
                dirs.push(path);
                continue;
            }
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            match verdict(&name, &prefix, attempt, subtask, restore) {
                Verdict::Keep => {}
                Verdict::Remove => match fs::remove_file(&path) {
                    Ok(()) => done.removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(TaskError::io("removing a part of an earlier attempt", &path, e)),
                },
                Verdict::Publish(to) => {
                    fs::rename(&path, dir.join(&to))
                        .map_err(|e| TaskError::io("publishing a part of the restored checkpoint", &path, e))?;
                    done.published += 1;
                    published_here = true;
                }
            }
        }
        if published_here {
            sync_dir(&dir)?;
        }
    }
    Ok(done)
}

fn verdict(name: &str, prefix: &str, attempt: u32, subtask: u32, restore: Option<RestorePoint>) -> Verdict {
    let hidden = name.starts_with('.');
    let Some(rest) = name.strip_prefix('.').unwrap_or(name).strip_prefix(prefix) else {
        return Verdict::Keep;
    };
    let Some((owner, rest)) = rest.split_once('-') else {
        return Verdict::Keep;
    };
    let Ok(owner) = owner.parse::<u32>() else {
        return Verdict::Keep;
    };
    let mine = rest
        .split_once('-')
        .is_some_and(|(s, _)| s.parse::<u32>() == Ok(subtask));
    if !mine || owner >= attempt {
        return Verdict::Keep;
    }
    let Some(RestorePoint {
        attempt: a,
        checkpoint: n,
    }) = restore
    else {
        return Verdict::Remove;
    };
    // The checkpoint that committed (or will commit) the part, from its `_c<m>` tag.
    let committed_by = |stem: &str| -> Option<u64> { stem.rsplit_once("_c").and_then(|(_, m)| m.parse().ok()) };
    if hidden {
        if let Some(pending) = name.strip_suffix(".pending")
            && let Some(m) = pending.strip_suffix(".parquet").and_then(committed_by)
            && owner == a
            && m <= n
        {
            return Verdict::Publish(PathBuf::from(&pending[1..]));
        }
        return Verdict::Remove;
    }
    let covered = owner < a
        || (owner == a
            && name
                .strip_suffix(".parquet")
                .and_then(committed_by)
                .is_some_and(|m| m <= n));
    if covered { Verdict::Keep } else { Verdict::Remove }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::filesystem::test_files::names;

    #[test]
    fn without_a_checkpoint_every_part_of_earlier_attempts_of_the_subtask_goes() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("dt=2026-01-01/hour=03");
        fs::create_dir_all(&hour).unwrap();
        for n in [
            "part-job-1.0-1-00000_1_2.parquet",
            ".part-job-1.1-1-00003.parquet.inprogress",
            "part-job-1.2-1-00000_1_2.parquet",
            "part-job-1.0-0-00000_1_2.parquet",
            "part-job-10.0-1-00000_1_2.parquet",
            "part-job-1.0-11-00000_1_2.parquet",
        ] {
            fs::write(hour.join(n), b"x").unwrap();
        }
        let done = prepare_for_attempt(dir.path(), "job-1", 2, 1, None).unwrap();
        assert_eq!(
            done,
            Prepared {
                removed: 2,
                published: 0
            }
        );
        assert_eq!(
            names(&hour),
            vec![
                "part-job-1.0-0-00000_1_2.parquet",
                "part-job-1.0-11-00000_1_2.parquet",
                "part-job-1.2-1-00000_1_2.parquet",
                "part-job-10.0-1-00000_1_2.parquet",
            ]
        );
    }

    #[test]
    fn restoring_a_checkpoint_keeps_what_it_covers_and_publishes_its_pending_parts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in [
            // Attempt 0 committed these before attempt 1 restored its checkpoint 4.
            "part-j.0-0-00000_1_2_c3.parquet",
            // Attempt 1 (which took checkpoint 6, the one restored now):
            "part-j.1-0-00000_1_2_c5.parquet",
            ".part-j.1-0-00001_1_2_c6.parquet.pending",
            ".part-j.1-0-00002_1_2_c7.parquet.pending",
            "part-j.1-0-00003_1_2_end.parquet",
            ".part-j.1-0-00004.parquet.inprogress",
            // Attempt 2 failed before any checkpoint.
            "part-j.2-0-00000_1_2_end.parquet",
            // Another subtask's parts are not this one's business.
            ".part-j.1-1-00001_1_2_c6.parquet.pending",
        ] {
            fs::write(d.join(n), b"x").unwrap();
        }
        let restore = RestorePoint {
            attempt: 1,
            checkpoint: 6,
        };
        let done = prepare_for_attempt(d, "j", 3, 0, Some(restore)).unwrap();
        assert_eq!(
            done,
            Prepared {
                removed: 4,
                published: 1
            }
        );
        assert_eq!(
            names(d),
            vec![
                ".part-j.1-1-00001_1_2_c6.parquet.pending",
                "part-j.0-0-00000_1_2_c3.parquet",
                "part-j.1-0-00000_1_2_c5.parquet",
                "part-j.1-0-00001_1_2_c6.parquet",
            ]
        );
        // Preparing again (the attempt failed at once) changes nothing.
        let again = prepare_for_attempt(d, "j", 4, 0, Some(restore)).unwrap();
        assert_eq!(again, Prepared::default());
    }
}
