//! Placement of subtasks on slots. Subtask i of every task goes to slot i (slots are
//! shared by one subtask of each task, as in Flink's default slot-sharing group), and
//! consecutive slots alternate between task managers so that load spreads across them.
//! In a cluster, a job's slots are taken one at a time from the task manager with the
//! most free slots left, which spreads a job over as many task managers as it can use.

use weir_common::JobGraph;
use weir_proto::taskmanager::SubtaskPlacement;

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

/// A live task manager and the slots no running job uses.
#[derive(Debug, Clone)]
pub struct FreeSlots {
    pub task_manager_id: String,
    pub address: String,
    pub free: Vec<u32>,
}

/// Places every subtask of `graph` on the free slots, or `None` when there are not enough.
pub fn place_in_cluster(graph: &JobGraph, mut task_managers: Vec<FreeSlots>) -> Option<Vec<SubtaskPlacement>> {
    let needed = graph.slots_needed() as usize;
    if task_managers.iter().map(|t| t.free.len()).sum::<usize>() < needed {
        return None;
    }
    for tm in &mut task_managers {
        // Lowest slot first: popped from the end.
        tm.free.sort_unstable_by(|a, b| b.cmp(a));
    }
    let mut slots = Vec::with_capacity(needed);
    for _ in 0..needed {
        let tm = task_managers
            .iter_mut()
            .enumerate()
            .max_by_key(|(i, t)| (t.free.len(), std::cmp::Reverse(*i)))
            .map(|(_, t)| t)?;
        let slot = tm.free.pop()?;
        slots.push((tm.task_manager_id.clone(), tm.address.clone(), slot));
    }
    let mut placements = Vec::new();
    for task in &graph.tasks {
        for s in 0..task.parallelism {
            let (id, address, slot) = &slots[s as usize];
            placements.push(SubtaskPlacement {
                task: task.id as u32,
                subtask: s,
                task_manager_id: id.clone(),
                address: address.clone(),
                slot: *slot,
            });
        }
    }
    Some(placements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_placement_spreads_and_waits_for_enough_slots() {
        let spec = weir_common::spec_loader::parse_spec(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/w2-hourly-etl.json")).unwrap(),
            &["parallelism=3".to_string()],
        )
        .unwrap();
        let graph = weir_common::validation::validate(&spec).unwrap();
        let tm = |id: &str, free: Vec<u32>| FreeSlots {
            task_manager_id: id.into(),
            address: format!("{id}:1"),
            free,
        };
        assert!(place_in_cluster(&graph, vec![tm("a", vec![0]), tm("b", vec![1])]).is_none());
        let placed = place_in_cluster(&graph, vec![tm("a", vec![0, 1]), tm("b", vec![0, 1])]).unwrap();
        let mut used: Vec<(String, u32)> = placed.iter().map(|p| (p.task_manager_id.clone(), p.slot)).collect();
        used.sort();
        used.dedup();
        assert_eq!(
            used,
            vec![("a".into(), 0), ("a".into(), 1), ("b".into(), 0)],
            "three slots, spread over both task managers"
        );
        assert_eq!(
            placed.len() as u32,
            graph.tasks.iter().map(|t| t.parallelism).sum::<u32>()
        );
    }

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
