//! JSON-lines files as a source: a single file, or every regular, non-hidden file of a
//! directory in name order. Files are dealt out to subtasks round robin. Reading is
//! asynchronous (tokio's file I/O runs on its blocking pool, off the actor's thread);
//! records carry their file and line number for dead letters.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use weir_common::source_position::SourcePosition;
use weir_common::spec::FileSourceSpec;

use crate::error::TaskError;
use crate::runtime::source::{RawRecords, SourceOutput, SourceReader, foreign_position};

const READ_CHUNK: usize = 1 << 20;

pub struct JsonLinesSource {
    root: PathBuf,
    subtask: u32,
    parallelism: u32,
    batch_size: usize,
    files: Option<Vec<PathBuf>>,
    current: Option<OpenFile>,
    /// Where to resume, applied when the files are listed.
    resume: Option<SourcePosition>,
}

struct OpenFile {
    file: tokio::fs::File,
    origin: Arc<str>,
    path: PathBuf,
    /// Bytes read; those before `pos` are already split into lines.
    pending: Vec<u8>,
    pos: usize,
    /// Offset in the file of `pending[0]`.
    pending_offset: u64,
    line: u64,
    eof: bool,
}

impl JsonLinesSource {
    pub fn new(spec: &FileSourceSpec, subtask: u32, parallelism: u32) -> Self {
        Self {
            root: PathBuf::from(&spec.path),
            subtask,
            parallelism,
            batch_size: spec.batch_size,
            files: None,
            current: None,
            resume: None,
        }
    }

    async fn list_files(&self) -> Result<Vec<PathBuf>, TaskError> {
        let meta = tokio::fs::metadata(&self.root)
            .await
            .map_err(|e| TaskError::io("reading source path", &self.root, e))?;
        let mut files = if meta.is_dir() {
            let mut entries = tokio::fs::read_dir(&self.root)
                .await
                .map_err(|e| TaskError::io("listing source directory", &self.root, e))?;
            let mut files = Vec::new();
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| TaskError::io("listing source directory", &self.root, e))?
            {
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                let is_file = entry.file_type().await.map(|t| t.is_file()).unwrap_or(false);
                if is_file && !hidden {
                    files.push(entry.path());
                }
            }
            files.sort();
            files
        } else {
            vec![self.root.clone()]
        };
        let mut i = 0u32;
        files.retain(|_| {
            let mine = i % self.parallelism == self.subtask;
            i += 1;
            mine
        });
        files.reverse();
        Ok(files)
    }

    async fn open(path: PathBuf) -> Result<OpenFile, TaskError> {
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| TaskError::io("opening source file", &path, e))?;
        Ok(OpenFile {
            file,
            origin: Arc::from(path.display().to_string()),
            path,
            pending: Vec::new(),
            pos: 0,
            pending_offset: 0,
            line: 0,
            eof: false,
        })
    }

    /// Skips the files before the position's file and opens that one at its offset.
    async fn resume_at(&mut self, position: SourcePosition) -> Result<(), TaskError> {
        let files = self.files.as_mut().expect("listed before resuming");
        match position {
            SourcePosition::FilesStart => {}
            SourcePosition::FilesDone => files.clear(),
            SourcePosition::FileAt { file, offset, line } => {
                // The list is in reverse order: the next file is last.
                while files.last().is_some_and(|p| p.display().to_string() != file) {
                    files.pop();
                }
                let Some(path) = files.pop() else {
                    return Err(TaskError::Invalid {
                        vertex: self.root.display().to_string(),
                        message: format!("cannot resume in {file}: it is no longer among the source's files"),
                    });
                };
                let mut f = Self::open(path).await?;
                f.file
                    .seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| TaskError::io("seeking in source file", &f.path, e))?;
                f.pending_offset = offset;
                f.line = line;
                self.current = Some(f);
            }
            other => return Err(foreign_position("file source", &other)),
        }
        Ok(())
    }

    async fn read_batch(&mut self) -> Result<Option<RawRecords>, TaskError> {
        if self.files.is_none() {
            self.files = Some(self.list_files().await?);
            if let Some(position) = self.resume.take() {
                self.resume_at(position).await?;
            }
        }
        loop {
            if self.current.is_none() {
                match self.files.as_mut().and_then(|f| f.pop()) {
                    Some(path) => self.current = Some(Self::open(path).await?),
                    None => return Ok(None),
                }
            }
            let f = self.current.as_mut().expect("opened above");
            let mut raw = RawRecords {
                origin: f.origin.clone(),
                ..Default::default()
            };
            while raw.len() < self.batch_size {
                if let Some(nl) = f.pending[f.pos..].iter().position(|b| *b == b'\n') {
                    f.line += 1;
                    push_line(&mut raw, &f.pending[f.pos..f.pos + nl], f.line);
                    f.pos += nl + 1;
                    continue;
                }
                if f.eof {
                    if f.pos < f.pending.len() {
                        f.line += 1;
                        push_line(&mut raw, &f.pending[f.pos..], f.line);
                        f.pos = f.pending.len();
                    }
                    break;
                }
                fill(f).await?;
            }
            if f.eof && f.pos == f.pending.len() {
                self.current = None;
            }
            if !raw.is_empty() {
                return Ok(Some(raw));
            }
        }
    }
}

async fn fill(f: &mut OpenFile) -> Result<(), TaskError> {
    f.pending.drain(..f.pos);
    f.pending_offset += f.pos as u64;
    f.pos = 0;
    let start = f.pending.len();
    f.pending.resize(start + READ_CHUNK, 0);
    let n = f
        .file
        .read(&mut f.pending[start..])
        .await
        .map_err(|e| TaskError::io("reading source file", &f.path, e))?;
    f.pending.truncate(start + n);
    f.eof = n == 0;
    Ok(())
}

fn push_line(raw: &mut RawRecords, line: &[u8], number: u64) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.iter().all(u8::is_ascii_whitespace) {
        raw.push(line, number);
    }
}

impl SourceReader for JsonLinesSource {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<SourceOutput>, TaskError>> {
        Box::pin(async move { Ok(self.read_batch().await?.map(SourceOutput::Raw)) })
    }

    fn position(&self) -> SourcePosition {
        match (&self.current, &self.files) {
            (Some(f), _) => SourcePosition::FileAt {
                file: f.path.display().to_string(),
                offset: f.pending_offset + f.pos as u64,
                line: f.line,
            },
            // Nothing read yet: where it will start.
            (None, None) => self.resume.clone().unwrap_or(SourcePosition::FilesStart),
            // Between files: the next one to open (the list is kept in reverse order).
            (None, Some(files)) => match files.last() {
                Some(next) => SourcePosition::FileAt {
                    file: next.display().to_string(),
                    offset: 0,
                    line: 0,
                },
                None => SourcePosition::FilesDone,
            },
        }
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), TaskError> {
        match position {
            SourcePosition::FilesStart | SourcePosition::FileAt { .. } | SourcePosition::FilesDone => {
                self.resume = Some(position.clone());
                Ok(())
            }
            other => Err(foreign_position("file source", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_position_is_the_next_unread_line_of_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "{\"v\":1}\n{\"v\":2}\n{\"v\":3}\n").unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "{\"v\":4}\n").unwrap();
        let spec = FileSourceSpec {
            path: dir.path().display().to_string(),
            batch_size: 2,
        };
        let mut source = JsonLinesSource::new(&spec, 0, 1);
        assert_eq!(source.position(), SourcePosition::FilesStart);
        source.next().await.unwrap().unwrap();
        let a = dir.path().join("a.jsonl").display().to_string();
        assert_eq!(
            source.position(),
            SourcePosition::FileAt {
                file: a.clone(),
                offset: 16,
                line: 2
            }
        );
        source.next().await.unwrap().unwrap();
        let b = dir.path().join("b.jsonl").display().to_string();
        assert_eq!(
            source.position(),
            SourcePosition::FileAt {
                file: b,
                offset: 0,
                line: 0
            },
            "a.jsonl is done; b.jsonl is next"
        );
        source.next().await.unwrap().unwrap();
        assert!(source.next().await.unwrap().is_none());
        assert_eq!(source.position(), SourcePosition::FilesDone);
    }

    #[tokio::test]
    async fn resuming_at_a_position_reads_exactly_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (0..25).map(|i| format!("{{\"v\":{i}}}")).collect();
        for (name, chunk) in [
            ("a.jsonl", &lines[..10]),
            ("b.jsonl", &lines[10..17]),
            ("c.jsonl", &lines[17..]),
        ] {
            std::fs::write(dir.path().join(name), chunk.join("\n") + "\n").unwrap();
        }
        let spec = FileSourceSpec {
            path: dir.path().display().to_string(),
            batch_size: 4,
        };
        let records = |raw: RawRecords| -> Vec<String> {
            (0..raw.len())
                .map(|i| String::from_utf8(raw.record(i).to_vec()).unwrap())
                .collect()
        };
        for stop_after in 0..7 {
            let mut first = JsonLinesSource::new(&spec, 0, 1);
            let mut seen = Vec::new();
            for _ in 0..stop_after {
                if let Some(SourceOutput::Raw(raw)) = first.next().await.unwrap() {
                    seen.extend(records(raw));
                }
            }
            let mut resumed = JsonLinesSource::new(&spec, 0, 1);
            resumed.seek(&first.position()).unwrap();
            while let Some(SourceOutput::Raw(raw)) = resumed.next().await.unwrap() {
                seen.extend(records(raw));
            }
            assert_eq!(seen, lines, "stopped after {stop_after} batches");
        }
    }
}
