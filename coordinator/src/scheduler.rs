//! Placement of subtasks on slots. Subtask i of every task goes to slot i (slots are
//! shared by one subtask of each task, as in Flink's default slot-sharing group), and
//! consecutive slots alternate between task managers so that load spreads across them.

use weir_common::JobGraph;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRef {
    pub task_manager: usize,
    pub slot: usize,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "job '{job}' needs {needed} slots but the cluster offers {offered} ({task_managers} task managers x {slots} slots)"
)]
pub struct NotEnoughSlots {
    pub job: String,
    pub needed: usize,
    pub offered: usize,
    pub task_managers: usize,
    pub slots: usize,
}

/// Where subtask `subtask` of any task runs.
pub fn place(subtask: u32, task_managers: usize) -> SlotRef {
    let s = subtask as usize;
    SlotRef {
        task_manager: s % task_managers,
        slot: s / task_managers,
    }
}

pub fn check_capacity(graph: &JobGraph, task_managers: usize, slots: usize) -> Result<(), NotEnoughSlots> {
    let needed = graph.slots_needed() as usize;
    let offered = task_managers * slots;
    // Placement fills slot s/N on task manager s%N, so every task manager needs enough.
    if needed > offered || needed.div_ceil(task_managers) > slots {
        return Err(NotEnoughSlots {
            job: graph.name.clone(),
            needed,
            offered,
            task_managers,
            slots,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtasks_alternate_between_task_managers() {
        let placed: Vec<SlotRef> = (0..4).map(|s| place(s, 2)).collect();
        assert_eq!(
            placed,
            vec![
                SlotRef {
                    task_manager: 0,
                    slot: 0
                },
                SlotRef {
                    task_manager: 1,
                    slot: 0
                },
                SlotRef {
                    task_manager: 0,
                    slot: 1
                },
                SlotRef {
                    task_manager: 1,
                    slot: 1
                },
            ]
        );
    }
}
