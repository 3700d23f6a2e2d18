//! A task manager's slots: one arbiter (an event-loop thread) per slot. Subtasks placed on
//! the same slot share its thread, as tasks in one Flink slot-sharing group share a slot.

use actix::prelude::*;

pub struct SlotPool {
    arbiters: Vec<Arbiter>,
}

impl SlotPool {
    pub fn new(slots: usize) -> Self {
        Self {
            arbiters: (0..slots).map(|_| Arbiter::new()).collect(),
        }
    }

    pub fn slot(&self, i: usize) -> ArbiterHandle {
        self.arbiters[i].handle()
    }

    /// Stops every slot's event loop and waits for the threads to end.
    pub fn shutdown(self) {
        for a in &self.arbiters {
            a.stop();
        }
        for a in self.arbiters {
            let _ = a.join();
        }
    }
}
