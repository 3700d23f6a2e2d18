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
    /// Where a finished source keeps itself reporting (see [`AlignedSource::finish`]).
    finished: Weak<Mutex<Vec<Arc<AlignedSource>>>>,
}

impl AlignedSource {
    /// How far the subtask's partitions may read; `None` while the leader sets no limit.
    pub fn allowed(&self) -> Option<i64> {
        Some(self.allowed.load(Ordering::Relaxed)).filter(|a| *a != UNLIMITED)
    }

    fn attempt(&self) -> (String, u32) {
        let s = self.standing.lock().expect("alignment lock");
        (s.job_id.clone(), s.attempt)
    }

    /// The subtask read all its input. It goes on reporting, as idle (holding nobody
    /// back), while other sources of its job run here: a member that merely vanished
    /// would leave its group incomplete, without an allowance, until its last report
    /// expired (a 3 s stall at the end of every bounded aligned job).
    pub fn finish(self: &Arc<Self>) {
        self.publish(None, Vec::new());
        if let Some(finished) = self.finished.upgrade() {
            finished.lock().expect("alignment lock").push(self.clone());
        }
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
    /// Finished sources, kept while their job still has running sources here.
    finished: Arc<Mutex<Vec<Arc<AlignedSource>>>>,
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
            finished: Arc::downgrade(&self.finished),
        });
        self.sources
            .lock()
            .expect("alignment lock")
            .push(Arc::downgrade(&source));
        source
    }

    fn live(&self) -> Vec<Arc<AlignedSource>> {
        let mut sources = self.sources.lock().expect("alignment lock");
        let mut finished = self.finished.lock().expect("alignment lock");
        let running: Vec<(String, u32)> = sources
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| !finished.iter().any(|f| Arc::ptr_eq(f, s)))
            .map(|s| s.attempt())
            .collect();
        finished.retain(|f| running.contains(&f.attempt()));
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

    #[test]
    fn a_finished_source_reports_idle_while_its_job_has_running_sources_here() {
        let slots = AlignmentSlots::default();
        let member = |subtask| AlignmentMember {
            job_id: "j".into(),
            attempt: 1,
            group: "g".into(),
            group_size: 2,
            max_drift_ms: 10,
            task: 0,
            subtask,
        };
        let (a, b) = (slots.register(member(0)), slots.register(member(1)));
        a.publish(Some(100), vec![]);
        b.publish(Some(50), vec!["0".into()]);
        b.finish();
        drop(b);
        let reports = slots.reports();
        assert_eq!(reports.len(), 2, "the finished subtask still reports");
        assert!(reports.iter().any(|r| r.subtask == 1 && r.idle && r.paused.is_empty()));
        drop(a);
        assert!(slots.reports().is_empty(), "nothing of the job runs here any more");
    }
}
