//! Rows an aligned source read but keeps back because they lie past its group's allowance.
//!
//! Pausing a Kafka partition stops fetching, but what was fetched before the pause took
//! effect (the consumer's chunks in flight, a whole first chunk before any allowance is
//! known) would otherwise still go downstream: at startup and after every restore that
//! let fast partitions race hours ahead of slow ones. Instead each split's rows are cut
//! at the first row whose watermark would pass the allowance; that row and everything
//! after it wait here, in order, until the allowance reaches them. The split stays paused
//! meanwhile, so at most the chunks already in flight pile up. A checkpoint puts the
//! split's position at the first held row, so a restore reads held rows again rather than
//! losing them.

use std::collections::VecDeque;

use arrow::record_batch::RecordBatch;

use crate::runtime::event_time_column::event_times;

struct Held {
    batch: RecordBatch,
    /// The reader's position of each row (for Kafka: its offset).
    positions: Vec<u64>,
}

#[derive(Default)]
pub struct HeldRows {
    splits: Vec<VecDeque<Held>>,
}

/// What `release` lets out: rows by split, in order; and per split that still holds rows,
/// the event time of its first held row.
pub struct Released {
    pub rows: Vec<(usize, RecordBatch)>,
    pub still_held: Vec<(usize, i64)>,
}

/// What a split emits now and the event time of its first held row, if any.
pub struct Cut {
    pub emit: Option<RecordBatch>,
    pub first_held: Option<i64>,
}

impl HeldRows {
    fn queue(&mut self, split: usize) -> &mut VecDeque<Held> {
        if split >= self.splits.len() {
            self.splits.resize_with(split + 1, VecDeque::new);
        }
        &mut self.splits[split]
    }

    pub fn holds(&self, split: usize) -> bool {
        self.splits.get(split).is_some_and(|q| !q.is_empty())
    }

    /// A new batch of split `split` (rows at `positions`): the rows before the first one
    /// `past` says no to go out, the rest wait. Behind rows already waiting, all wait.
    pub fn take(
        &mut self,
        split: usize,
        batch: RecordBatch,
        positions: Vec<u64>,
        ts_column: usize,
        past: impl Fn(i64) -> bool,
    ) -> Cut {
        let queue = self.queue(split);
        if !queue.is_empty() {
            queue.push_back(Held { batch, positions });
            return Cut {
                emit: None,
                first_held: None,
            };
        }
        let ts = event_times(&batch, ts_column);
        let Some(at) = ts.iter().position(|t| past(*t)) else {
            return Cut {
                emit: Some(batch),
                first_held: None,
            };
        };
        let first_held = Some(ts[at]);
        let rows = batch.num_rows();
        queue.push_back(Held {
            batch: batch.slice(at, rows - at),
            positions: positions[at..].to_vec(),
        });
        Cut {
            emit: (at > 0).then(|| batch.slice(0, at)),
            first_held,
        }
    }

    /// Lets out, per split, the held rows up to the first one `past` still says no to.
    pub fn release(&mut self, ts_column: usize, past: impl Fn(i64) -> bool) -> Released {
        let mut out = Vec::new();
        let mut still = Vec::new();
        for (split, queue) in self.splits.iter_mut().enumerate() {
            while let Some(front) = queue.front_mut() {
                let ts = event_times(&front.batch, ts_column);
                match ts.iter().position(|t| past(*t)) {
                    None => {
                        let whole = queue.pop_front().expect("front exists");
                        out.push((split, whole.batch));
                    }
                    Some(0) => {
                        still.push((split, ts[0]));
                        break;
                    }
                    Some(at) => {
                        let first = ts[at];
                        let rows = front.batch.num_rows();
                        out.push((split, front.batch.slice(0, at)));
                        front.batch = front.batch.slice(at, rows - at);
                        front.positions.drain(..at);
                        still.push((split, first));
                        break;
                    }
                }
            }
        }
        Released {
            rows: out,
            still_held: still,
        }
    }

    /// Everything held, in order (the input ended).
    pub fn drain(&mut self) -> Vec<(usize, RecordBatch)> {
        let mut out = Vec::new();
        for (split, queue) in self.splits.iter_mut().enumerate() {
            out.extend(queue.drain(..).map(|h| (split, h.batch)));
        }
        out
    }

    /// The position of the first held row of each split that holds any.
    pub fn first_positions(&self) -> Vec<(usize, u64)> {
        self.splits
            .iter()
            .enumerate()
            .filter_map(|(split, q)| q.front().map(|h| (split, h.positions[0])))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(ts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(ts.to_vec()))]).unwrap()
    }

    fn values(b: &RecordBatch) -> Vec<i64> {
        event_times(b, 0).to_vec()
    }

    #[test]
    fn rows_past_the_limit_wait_in_order_and_go_out_as_the_limit_moves() {
        let mut held = HeldRows::default();
        let cut = held.take(0, batch(&[1, 2, 5, 3, 6]), vec![10, 11, 12, 13, 14], 0, |t| t > 4);
        assert_eq!(values(&cut.emit.unwrap()), vec![1, 2]);
        assert_eq!(cut.first_held, Some(5));
        // Later rows of the split queue behind, even those inside the limit.
        let cut = held.take(0, batch(&[4, 7]), vec![15, 16], 0, |t| t > 4);
        assert!(cut.emit.is_none());
        assert_eq!(held.first_positions(), vec![(0, 12)]);
        // Another split is not held up.
        let cut = held.take(1, batch(&[3]), vec![0], 0, |t| t > 4);
        assert_eq!(values(&cut.emit.unwrap()), vec![3]);

        let Released {
            rows: out,
            still_held: still,
        } = held.release(0, |t| t > 5);
        assert_eq!(
            out.iter().map(|(s, b)| (*s, values(b))).collect::<Vec<_>>(),
            vec![(0, vec![5, 3])]
        );
        assert_eq!(still, vec![(0, 6)]);
        assert_eq!(held.first_positions(), vec![(0, 14)]);
        let Released {
            rows: out,
            still_held: still,
        } = held.release(0, |_| false);
        assert_eq!(
            out.iter().map(|(s, b)| (*s, values(b))).collect::<Vec<_>>(),
            vec![(0, vec![6]), (0, vec![4, 7])]
        );
        assert!(still.is_empty() && !held.holds(0));
        assert!(held.first_positions().is_empty());
    }
}
