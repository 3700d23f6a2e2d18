//! Removes what earlier attempts of a job left in a sink's directory tree. Without
//! checkpoints a restarted job replays its input from the beginning, so the files of the
//! attempts before it (published parts and abandoned in-progress parts alike) would be
//! duplicates: each sink subtask deletes those of its own subtask index before it writes.
//! Part names say whose they are: `[.]part-<job id>.<attempt>-<subtask>-...`.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use crate::error::TaskError;

/// Deletes the parts of `job_id` attempts below `attempt` written by `subtask` under
/// `root`; returns how many.
pub fn remove_earlier_attempts(root: &Path, job_id: &str, attempt: u32, subtask: u32) -> Result<u64, TaskError> {
    if attempt == 0 {
        return Ok(0);
    }
    let prefix = format!("part-{job_id}.");
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(TaskError::io("listing sink directory", &dir, e)),
        };
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
            let name = entry.file_name();
            let Some(rest) = name
                .to_str()
                .map(|n| n.strip_prefix('.').unwrap_or(n))
                .and_then(|n| n.strip_prefix(&prefix))
            else {
                continue;
            };
            let Some((earlier, rest)) = rest.split_once('-') else {
                continue;
            };
            let Ok(earlier) = earlier.parse::<u32>() else { continue };
            let mine = rest
                .split_once('-')
                .is_some_and(|(s, _)| s.parse::<u32>() == Ok(subtask));
            if earlier < attempt && mine {
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(TaskError::io("removing a part of an earlier attempt", &path, e)),
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_earlier_attempts_of_the_same_job_and_subtask_go() {
        let dir = tempfile::tempdir().unwrap();
        let hour = dir.path().join("dt=2026-01-01/hour=03");
        fs::create_dir_all(&hour).unwrap();
        let names = [
            "part-job-1.0-1-00000_1_2.parquet",
            ".part-job-1.1-1-00003.parquet.inprogress",
            "part-job-1.2-1-00000_1_2.parquet",
            "part-job-1.0-0-00000_1_2.parquet",
            "part-job-10.0-1-00000_1_2.parquet",
            "part-job-1.0-11-00000_1_2.parquet",
        ];
        for n in names {
            fs::write(hour.join(n), b"x").unwrap();
        }
        assert_eq!(remove_earlier_attempts(dir.path(), "job-1", 2, 1).unwrap(), 2);
        let mut left: Vec<String> = fs::read_dir(&hour)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "part-job-1.0-0-00000_1_2.parquet",
                "part-job-1.0-11-00000_1_2.parquet",
                "part-job-1.2-1-00000_1_2.parquet",
                "part-job-10.0-1-00000_1_2.parquet",
            ]
        );
    }
}
