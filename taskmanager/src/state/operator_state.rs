//! A stateful operator subtask's keyed state over its life: the RocksDB instance opened
//! with the operator's declared states (at once after a restore, else on first need),
//! the snapshot and upload on every checkpoint barrier, and stopping uploads when the
//! operator goes away.

use crate::state::OperatorStateContext;
use crate::state::keyed_state_backend::{KeyedStateBackend, StateError};
use crate::state::state_descriptor::StateDescriptor;

pub struct OperatorState {
    name: String,
    ctx: OperatorStateContext,
    states: Vec<StateDescriptor>,
    backend: Option<KeyedStateBackend>,
}

impl OperatorState {
    pub fn new(name: &str, ctx: OperatorStateContext, states: Vec<StateDescriptor>) -> Self {
        Self {
            name: name.to_string(),
            ctx,
            states,
            backend: None,
        }
    }

    /// Whether the job checkpoints (else barriers never reach the state).
    pub fn checkpoints(&self) -> bool {
        self.ctx.uploader.is_some()
    }

    /// Whether a restore brought state: then the operator opens the backend before the
    /// first event, to learn what it holds (open windows, pending timers).
    pub fn restored(&self) -> bool {
        self.ctx.restored
    }

    pub fn max_parallelism(&self) -> u32 {
        self.ctx.max_parallelism
    }

    /// The backend if it is open.
    pub fn opened(&self) -> Option<&KeyedStateBackend> {
        self.backend.as_ref()
    }

    /// The backend, opened (and filled from a restore) on first call.
    pub fn backend(&mut self) -> Result<&KeyedStateBackend, StateError> {
        if self.backend.is_none() {
            let backend = KeyedStateBackend::open(
                &self.name,
                &self.ctx.dir,
                &self.states,
                &self.ctx.merge_from,
                self.ctx.key_groups,
            )?;
            self.ctx.merge_from.clear();
            self.backend = Some(backend);
        }
        Ok(self.backend.as_ref().expect("just opened"))
    }

    /// Checkpoint `id`'s barrier: snapshots RocksDB and hands the snapshot to the
    /// uploader, which acknowledges the checkpoint once the files are stored. The caller
    /// first writes whatever it keeps in memory into the backend.
    pub fn checkpoint(&mut self, id: u64) -> Result<(), StateError> {
        if !self.checkpoints() {
            return Ok(());
        }
        let local = self.backend()?.snapshot(id)?;
        if let Some(uploader) = &self.ctx.uploader {
            uploader.upload(id, local);
        }
        Ok(())
    }
}

impl Drop for OperatorState {
    fn drop(&mut self) {
        if let Some(u) = &self.ctx.uploader {
            u.stop();
        }
    }
}
