//! The benchmark workloads of `shared/bench/flink/README.md` as a source, bit for bit.
//! Subtask s of p emits the indices g ≡ s (mod p) in increasing order, so every subtask
//! advances through event time at the same pace.

pub mod datagen;
pub mod typed_reader;
pub mod w2_reader;

use weir_common::spec::{GeneratorSpec, GeneratorWorkload};

use crate::runtime::source::SourceReader;

/// The indices one subtask emits.
#[derive(Debug, Clone)]
pub struct IndexRange {
    pub next: u64,
    pub end: u64,
    pub step: u64,
}

impl IndexRange {
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
    match spec.workload {
        GeneratorWorkload::W2Logs => Box::new(w2_reader::W2Reader::new(range, spec.batch_size)),
        w => Box::new(typed_reader::TypedReader::new(w, range, spec.batch_size)),
    }
}
