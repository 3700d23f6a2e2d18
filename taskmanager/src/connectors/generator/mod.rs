//! The benchmark workloads of `shared/bench/flink/README.md` as a source, bit for bit.
//! Subtask s of p emits the indices g ≡ s (mod p) in increasing order, so every subtask
//! advances through event time at the same pace.

pub mod datagen;
pub mod pausable;
pub mod rate_limit;
pub mod typed_reader;
pub mod w2_reader;

use weir_common::spec::{GeneratorSpec, GeneratorWorkload};

use weir_common::source_position::SourcePosition;

use crate::error::TaskError;
use crate::runtime::source::{SourceReader, foreign_position};

/// The indices one subtask emits.
#[derive(Debug, Clone)]
pub struct IndexRange {
    pub next: u64,
    pub end: u64,
    pub step: u64,
}

impl IndexRange {
    /// Continues at `next_index`, which must be one of this subtask's indices.
    pub fn seek(&mut self, position: &SourcePosition) -> Result<(), TaskError> {
        match position {
            SourcePosition::Generator { next_index } if next_index % self.step == self.next % self.step => {
                self.next = *next_index;
                Ok(())
            }
            other => Err(foreign_position("generator", other)),
        }
    }

    pub fn new(events: u64, subtask: u32, parallelism: u32) -> Self {
        Self {
            next: subtask as u64,
            end: events,
            step: parallelism as u64,
        }
    }
}

pub fn build(spec: &GeneratorSpec, subtask: u32, parallelism: u32) -> Box<dyn SourceReader> {
    let range = IndexRange::new(spec.events, subtask, parallelism);
    let reader: Box<dyn SourceReader> = match spec.workload {
        GeneratorWorkload::W2Logs => Box::new(w2_reader::W2Reader::new(range, spec.batch_size)),
        w => Box::new(typed_reader::TypedReader::new(w, range, spec.batch_size)),
    };
    let reader = match spec.events_per_second {
        Some(rate) => Box::new(rate_limit::RateLimited::new(reader, rate.div_ceil(parallelism as u64))),
        None => reader,
    };
    Box::new(pausable::Pausable::new(reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::source::SourceOutput;

    #[tokio::test]
    async fn resuming_a_generator_at_a_position_emits_exactly_the_rest() {
        let spec = GeneratorSpec {
            workload: GeneratorWorkload::W3Events,
            events: 10_000,
            batch_size: 700,
            events_per_second: None,
        };
        let count = |out: SourceOutput| match out {
            SourceOutput::Rows(b) => b.num_rows(),
            SourceOutput::Raw(r) => r.len(),
        };
        let mut first = build(&spec, 1, 3);
        let mut n = 0;
        for _ in 0..2 {
            n += count(first.next().await.unwrap().unwrap());
        }
        let mut resumed = build(&spec, 1, 3);
        resumed.seek(&first.position()).unwrap();
        while let Some(out) = resumed.next().await.unwrap() {
            n += count(out);
        }
        assert_eq!(n, (1..10_000).step_by(3).count(), "every index of subtask 1 of 3, once");
        let mut other = build(&spec, 0, 3);
        assert!(
            other.seek(&first.position()).is_err(),
            "another subtask's position is refused"
        );
    }
}
