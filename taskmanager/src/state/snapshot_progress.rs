//! A chain's state snapshots on their way to checkpoint storage: which checkpoints are
//! still uploading, the handles of finished uploads, and the handles of the last
//! completed checkpoint (whose files later snapshots may share instead of uploading).
//! A subtask acknowledges a checkpoint only once its barrier passed the tail *and* its
//! state is in storage.

use std::collections::BTreeMap;

use weir_common::state_handle::StateHandle;

#[derive(Debug, Default)]
pub struct SnapshotProgress {
    uploading: BTreeMap<u64, usize>,
    done: BTreeMap<u64, Vec<StateHandle>>,
    confirmed: Vec<StateHandle>,
}

impl SnapshotProgress {
    pub fn begin(&mut self, checkpoint: u64) {
        *self.uploading.entry(checkpoint).or_default() += 1;
    }

    /// An upload ended; a failed one (`None`) leaves the checkpoint without this handle,
    /// so the leader never completes it.
    pub fn finish(&mut self, checkpoint: u64, handle: Option<StateHandle>) {
        if let Some(n) = self.uploading.get_mut(&checkpoint) {
            *n -= 1;
            if *n == 0 {
                self.uploading.remove(&checkpoint);
            }
        }
        if let Some(h) = handle {
            self.done.entry(checkpoint).or_default().push(h);
        }
    }

    /// What to report for a chain whose tail passed barrier `passed`: the newest
    /// checkpoint it can acknowledge and that checkpoint's handles.
    pub fn acknowledge(&self, passed: u64) -> (u64, Vec<StateHandle>) {
        let ack = match self.uploading.range(..=passed).next() {
            Some((&pending, _)) => pending.saturating_sub(1),
            None => passed,
        };
        (ack, self.done.get(&ack).cloned().unwrap_or_default())
    }

    /// Checkpoint `id` completed: its files are the ones later snapshots may share.
    pub fn complete(&mut self, checkpoint: u64) {
        if let Some(handles) = self.done.remove(&checkpoint) {
            self.confirmed = handles;
        }
        self.done.retain(|id, _| *id > checkpoint);
    }

    /// The last completed checkpoint's handle of one operator subtask.
    pub fn confirmed(&self, vertex: u32, subtask: u32) -> Option<&StateHandle> {
        self.confirmed
            .iter()
            .find(|h| h.vertex == vertex && h.subtask == subtask)
    }
}

#[cfg(test)]
mod tests {
    use weir_common::key_groups::KeyGroupRange;

    use super::*;

    fn handle(bytes: u64) -> StateHandle {
        StateHandle {
            vertex: 1,
            subtask: 0,
            key_groups: KeyGroupRange { start: 0, end: 128 },
            files: Vec::new(),
            uploaded_bytes: bytes,
        }
    }

    #[test]
    fn acknowledges_only_uploaded_checkpoints() {
        let mut p = SnapshotProgress::default();
        p.begin(3);
        assert_eq!(p.acknowledge(3).0, 2, "still uploading");
        p.finish(3, Some(handle(7)));
        assert_eq!(p.acknowledge(3), (3, vec![handle(7)]));
        p.begin(4);
        p.finish(4, None);
        assert_eq!(p.acknowledge(4), (4, vec![]), "a failed upload has no handle");
        p.complete(3);
        assert_eq!(p.confirmed(1, 0), Some(&handle(7)));
        assert_eq!(p.acknowledge(3).1, vec![], "forgotten once completed");
    }
}
