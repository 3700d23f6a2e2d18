//! Watermark alignment for generators (W1's impressions and clicks run in one alignment
//! group in Flink's reference job): a paused generator reads nothing and, every
//! `PAUSED_TICK`, reports that nothing arrived, so that its driver checks the group's
//! allowance again — what a Kafka reader does for paused partitions. A generator has one
//! split; the wait is a timer on the subtask's event loop, never a blocked thread.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use weir_common::source_position::SourcePosition;

use crate::error::TaskError;
use crate::runtime::source::{RawRecords, SourceOutput, SourceReader};

/// How often a paused generator looks at its allowance again (the leader updates it about
/// every 200 ms).
const PAUSED_TICK: Duration = Duration::from_millis(20);

pub struct Pausable {
    inner: Box<dyn SourceReader>,
    paused: bool,
}

impl Pausable {
    pub fn new(inner: Box<dyn SourceReader>) -> Self {
        Self { inner, paused: false }
    }
}

impl SourceReader for Pausable {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<SourceOutput>, TaskError>> {
        if !self.paused {
            return self.inner.next();
        }
        async {
            tokio::time::sleep(PAUSED_TICK).await;
            Ok(Some(SourceOutput::Raw(RawRecords {
                origin: "generator".into(),
                ..Default::default()
            })))
        }
        .boxed()
    }

    fn position(&self) -> SourcePosition {
        self.inner.position()
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), TaskError> {
        self.inner.seek(position)
    }

    fn set_paused(&mut self, _split: usize, paused: bool) {
        self.paused = paused;
    }
}

#[cfg(test)]
mod tests {
    use weir_common::spec::{GeneratorSpec, GeneratorWorkload};

    use super::*;

    #[tokio::test]
    async fn a_paused_generator_emits_nothing_until_resumed_and_loses_nothing() {
        let spec = GeneratorSpec {
            workload: GeneratorWorkload::W3Events,
            events: 3_000,
            batch_size: 1_000,
            events_per_second: None,
        };
        let mut reader = super::super::build(&spec, 0, 1);
        let rows = |out: Option<SourceOutput>| match out {
            Some(SourceOutput::Rows(b)) => b.num_rows(),
            Some(SourceOutput::Raw(r)) => r.len(),
            None => 0,
        };
        assert_eq!(rows(reader.next().await.unwrap()), 1_000);
        reader.set_paused(0, true);
        for _ in 0..3 {
            let tick = reader.next().await.unwrap();
            assert!(
                matches!(&tick, Some(SourceOutput::Raw(r)) if r.is_empty()),
                "{}",
                rows(tick)
            );
        }
        reader.set_paused(0, false);
        assert_eq!(
            rows(reader.next().await.unwrap()) + rows(reader.next().await.unwrap()),
            2_000
        );
        assert!(reader.next().await.unwrap().is_none());
    }
}
