//! The global-watermark aggregator of watermark alignment: the latest watermark of every
//! aligned source subtask, per job and alignment group, and the allowance it implies
//! (`allowed = least watermark over the group's subtasks that are not idle + max drift`).
//!
//! Soft state, like the task-manager registry: a new leader (or `coordinator local`)
//! rebuilds it from the next reports within ~200 ms; until every subtask of a group has
//! reported there is no allowance and nothing is paused. Reports of an older attempt are
//! dropped when a newer one appears; reports that stop arriving (a lost task manager)
//! expire, so the group is unlimited rather than stuck until the job restarts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_common::event_time::WATERMARK_MAX;
use weir_proto::cluster::{GroupAllowance, SourceWatermark};
use weir_proto::job::AlignmentGroupStatus;

/// A report older than this no longer counts (several report intervals).
const EXPIRE: Duration = Duration::from_secs(3);

struct Group {
    attempt: u32,
    size: u32,
    max_drift_ms: u64,
    /// By (task, subtask): the report and when it arrived.
    reports: BTreeMap<(u32, u32), (SourceWatermark, Instant)>,
}

impl Group {
    fn fresh(&self, now: Instant) -> impl Iterator<Item = &SourceWatermark> {
        self.reports
            .values()
            .filter(move |(_, at)| now.duration_since(*at) < EXPIRE)
            .map(|(r, _)| r)
    }

    /// The least watermark over the subtasks that are not idle, once every subtask
    /// reported; `WATERMARK_MAX` when all are idle.
    fn global(&self, now: Instant) -> Option<i64> {
        if self.fresh(now).count() < self.size as usize {
            return None;
        }
        Some(
            self.fresh(now)
                .filter(|r| !r.idle)
                .map(|r| r.watermark)
                .min()
                .unwrap_or(WATERMARK_MAX),
        )
    }

    fn allowed(&self, now: Instant) -> Option<i64> {
        self.global(now)
            .filter(|g| *g != WATERMARK_MAX)
            .map(|g| g.saturating_add(self.max_drift_ms as i64))
    }
}

#[derive(Clone, Default)]
pub struct WatermarkAggregator {
    /// By job, then group.
    groups: Arc<Mutex<HashMap<String, BTreeMap<String, Group>>>>,
}

impl WatermarkAggregator {
    /// Takes a task manager's reports and answers the allowance of every group they
    /// belong to (groups not yet complete get none).
    pub fn report(&self, sources: Vec<SourceWatermark>) -> Vec<GroupAllowance> {
        let now = Instant::now();
        let mut jobs = self.groups.lock().expect("aggregator lock");
        let mut asked = Vec::new();
        for r in sources {
            let group = jobs
                .entry(r.job_id.clone())
                .or_default()
                .entry(r.group.clone())
                .or_insert_with(|| Group {
                    attempt: r.attempt,
                    size: r.group_size,
                    max_drift_ms: r.max_drift_ms,
                    reports: BTreeMap::new(),
                });
            if r.attempt < group.attempt {
                continue;
            }
            if r.attempt > group.attempt {
                group.reports.clear();
                group.attempt = r.attempt;
            }
            group.size = r.group_size;
            group.max_drift_ms = r.max_drift_ms;
            let key = (r.job_id.clone(), r.attempt, r.group.clone());
            if !asked.contains(&key) {
                asked.push(key);
            }
            group.reports.insert((r.task, r.subtask), (r, now));
        }
        asked
            .into_iter()
            .filter_map(|(job_id, attempt, group)| {
                let allowed = jobs.get(&job_id)?.get(&group)?.allowed(now)?;
                Some(GroupAllowance {
                    job_id,
                    attempt,
                    group,
                    allowed,
                })
            })
            .collect()
    }

    /// What `coordinator status` shows for `job`.
    pub fn status(&self, job: &str) -> Vec<AlignmentGroupStatus> {
        let now = Instant::now();
        let jobs = self.groups.lock().expect("aggregator lock");
        let Some(groups) = jobs.get(job) else {
            return Vec::new();
        };
        groups
            .iter()
            .map(|(name, g)| {
                let mut throttled: Vec<String> = g.fresh(now).flat_map(|r| r.paused.iter().cloned()).collect();
                throttled.sort();
                AlignmentGroupStatus {
                    group: name.clone(),
                    global_watermark: g.global(now).unwrap_or(i64::MIN),
                    allowed: g.allowed(now).unwrap_or(WATERMARK_MAX),
                    throttled,
                    subtasks_reporting: g.fresh(now).count() as u32,
                    subtasks: g.size,
                }
            })
            .collect()
    }

    /// Forgets a job that ended.
    pub fn forget(&self, job: &str) {
        self.groups.lock().expect("aggregator lock").remove(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(subtask: u32, watermark: i64, idle: bool) -> SourceWatermark {
        SourceWatermark {
            job_id: "j".into(),
            attempt: 0,
            group: "g".into(),
            group_size: 3,
            max_drift_ms: 1_000,
            task: 0,
            subtask,
            watermark,
            idle,
            paused: if subtask == 2 { vec!["t/5".into()] } else { vec![] },
        }
    }

    #[test]
    fn the_allowance_is_the_slowest_active_subtask_plus_the_drift_once_all_reported() {
        let agg = WatermarkAggregator::default();
        assert!(
            agg.report(vec![report(0, 5_000, false), report(1, 2_000, false)])
                .is_empty()
        );
        let allowed = agg.report(vec![report(2, 9_000, false)]);
        assert_eq!(allowed.len(), 1);
        assert_eq!(allowed[0].allowed, 3_000);
        // The slow one goes idle: the next slowest sets the pace.
        let allowed = agg.report(vec![report(1, 2_000, true)]);
        assert_eq!(allowed[0].allowed, 6_000);
        let status = &agg.status("j")[0];
        assert_eq!(
            (status.global_watermark, status.allowed, status.throttled.clone()),
            (5_000, 6_000, vec!["t/5".to_string()])
        );
        // All idle: no limit.
        assert!(
            agg.report(vec![report(0, 5_000, true), report(2, 9_000, true)])
                .is_empty()
        );
    }

    #[test]
    fn a_new_attempt_replaces_the_reports_of_the_old_one() {
        let agg = WatermarkAggregator::default();
        agg.report((0..3).map(|s| report(s, 1_000 * i64::from(s + 1), false)).collect());
        let mut newer = report(0, 50_000, false);
        newer.attempt = 1;
        assert!(agg.report(vec![newer]).is_empty(), "attempt 1 has one report of three");
        assert!(agg.report(vec![report(1, 1, false)]).is_empty(), "attempt 0 is over");
        assert_eq!(agg.status("j")[0].subtasks_reporting, 1);
    }
}
