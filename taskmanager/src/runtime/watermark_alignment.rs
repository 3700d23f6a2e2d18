//! The task manager's side of watermark alignment: each aligned source subtask holds an
//! [`AlignedSource`], where it publishes its watermark and paused partitions and reads the
//! allowance of its group; [`AlignmentSlots`] collects them for the report to the leader
//! (`worker::watermark_reporter`, or the in-process aggregator of `coordinator local`) and
//! hands the answers back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use weir_proto::cluster::{GroupAllowance, SourceWatermark};

/// No allowance: nothing is paused.
const UNLIMITED: i64 = i64::MAX;

pub struct AlignedSource {
    /// The report, kept current by the subtask (watermark, idle, paused).
    standing: Mutex<SourceWatermark>,
    allowed: AtomicI64,
}

impl AlignedSource {
    /// How far the subtask's partitions may read; `None` while the leader sets no limit.
    pub fn allowed(&self) -> Option<i64> {
        Some(self.allowed.load(Ordering::Relaxed)).filter(|a| *a != UNLIMITED)
    }

    /// The subtask's watermark (`None`: every partition idle) and its paused partitions.
    pub fn publish(&self, watermark: Option<i64>, paused: Vec<String>) {
        let mut s = self.standing.lock().expect("alignment lock");
        s.idle = watermark.is_none();
        if let Some(w) = watermark {
            s.watermark = w;
        }
        s.paused = paused;
    }
}

/// Which aligned source a subtask is.
pub struct AlignmentMember {
    pub job_id: String,
    pub attempt: u32,
    pub group: String,
    pub group_size: u32,
    pub max_drift_ms: u64,
    pub task: u32,
    pub subtask: u32,
}

#[derive(Clone, Default)]
pub struct AlignmentSlots {
    sources: Arc<Mutex<Vec<Weak<AlignedSource>>>>,
}

impl AlignmentSlots {
    pub fn register(&self, m: AlignmentMember) -> Arc<AlignedSource> {
        let source = Arc::new(AlignedSource {
            standing: Mutex::new(SourceWatermark {
                job_id: m.job_id,
                attempt: m.attempt,
                group: m.group,
                group_size: m.group_size,
                max_drift_ms: m.max_drift_ms,
                task: m.task,
                subtask: m.subtask,
                watermark: i64::MIN,
                idle: false,
                paused: Vec::new(),
            }),
            allowed: AtomicI64::new(UNLIMITED),
        });
        self.sources
            .lock()
            .expect("alignment lock")
            .push(Arc::downgrade(&source));
        source
    }

    fn live(&self) -> Vec<Arc<AlignedSource>> {
        let mut sources = self.sources.lock().expect("alignment lock");
        sources.retain(|s| s.strong_count() > 0);
        sources.iter().filter_map(Weak::upgrade).collect()
    }

    /// The standing of every aligned source subtask still running here.
    pub fn reports(&self) -> Vec<SourceWatermark> {
        self.live()
            .iter()
            .map(|s| s.standing.lock().expect("alignment lock").clone())
            .collect()
    }

    /// The leader's answer: each subtask takes its group's allowance, or none.
    pub fn apply(&self, allowances: &[GroupAllowance]) {
        for s in self.live() {
            let allowed = {
                let st = s.standing.lock().expect("alignment lock");
                allowances
                    .iter()
                    .find(|a| a.job_id == st.job_id && a.attempt == st.attempt && a.group == st.group)
                    .map_or(UNLIMITED, |a| a.allowed)
            };
            s.allowed.store(allowed, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowances_reach_the_subtasks_of_their_group_and_dropped_subtasks_stop_reporting() {
        let slots = AlignmentSlots::default();
        let member = |group: &str, subtask| AlignmentMember {
            job_id: "j".into(),
            attempt: 2,
            group: group.into(),
            group_size: 2,
            max_drift_ms: 10,
            task: 0,
            subtask,
        };
        let a = slots.register(member("g", 0));
        let b = slots.register(member("h", 1));
        a.publish(Some(100), vec!["t/0".into()]);
        b.publish(None, vec![]);
        let reports = slots.reports();
        assert_eq!((reports[0].watermark, reports[0].idle), (100, false));
        assert!(reports[1].idle);
        slots.apply(&[GroupAllowance {
            job_id: "j".into(),
            attempt: 2,
            group: "g".into(),
            allowed: 110,
        }]);
        assert_eq!((a.allowed(), b.allowed()), (Some(110), None));
        drop(b);
        assert_eq!(slots.reports().len(), 1);
    }
}
