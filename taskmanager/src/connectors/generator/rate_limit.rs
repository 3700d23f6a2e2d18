//! A generator that emits at most a given number of events per second (Flink's datagen
//! `rows-per-second`): for demos and for tests that need a job to run for a while
//! without a mountain of output. The wait is a timer on the subtask's event loop, never a
//! blocked thread.

use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use weir_common::source_position::SourcePosition;

use crate::error::TaskError;
use crate::runtime::source::{SourceOutput, SourceReader};

pub struct RateLimited {
    inner: Box<dyn SourceReader>,
    per_second: u64,
    started: Option<Instant>,
    emitted: u64,
}

impl RateLimited {
    pub fn new(inner: Box<dyn SourceReader>, per_second: u64) -> Self {
        Self {
            inner,
            per_second: per_second.max(1),
            started: None,
            emitted: 0,
        }
    }
}

impl SourceReader for RateLimited {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<SourceOutput>, TaskError>> {
        async move {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = started + Duration::from_secs_f64(self.emitted as f64 / self.per_second as f64);
            tokio::time::sleep_until(due.into()).await;
            let out = self.inner.next().await?;
            self.emitted += match &out {
                Some(SourceOutput::Rows(b)) => b.num_rows() as u64,
                Some(SourceOutput::Raw(r)) => r.len() as u64,
                None => 0,
            };
            Ok(out)
        }
        .boxed()
    }

    fn position(&self) -> SourcePosition {
        self.inner.position()
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), TaskError> {
        self.inner.seek(position)
    }
}
