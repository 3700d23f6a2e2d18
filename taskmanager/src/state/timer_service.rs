//! Event-time timers in RocksDB, ordered by time (then key group, namespace, key): the
//! timers due at a watermark are one range scan from the start of the column family,
//! pending timers live on disk rather than the heap, and they are part of every snapshot.
//! The earliest pending time is cached so that a watermark with nothing due costs no
//! RocksDB read.

use std::cell::Cell;

use crate::state::keyed_state_backend::StateError;
use crate::state::state_key::{Timer, time_bytes};
use crate::state::state_table::StateTable;

/// What is known about the earliest pending timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarliestTimer {
    /// Not known: the next question reads RocksDB.
    #[default]
    Unknown,
    None,
    At(i64),
}

#[derive(Clone, Copy)]
pub struct TimerService<'a> {
    pub(crate) table: StateTable<'a>,
    pub(crate) earliest: &'a Cell<EarliestTimer>,
}

impl TimerService<'_> {
    /// Registers `timer` (registering it again changes nothing).
    pub fn register(&self, timer: &Timer) -> Result<(), StateError> {
        self.table.put(&timer.encode(), &[])?;
        match self.earliest.get() {
            EarliestTimer::At(t) if t <= timer.time => {}
            EarliestTimer::Unknown => {}
            _ => self.earliest.set(EarliestTimer::At(timer.time)),
        }
        Ok(())
    }

    pub fn delete(&self, timer: &Timer) -> Result<(), StateError> {
        self.table.delete(&timer.encode())?;
        if self.earliest.get() == EarliestTimer::At(timer.time) {
            self.earliest.set(EarliestTimer::Unknown);
        }
        Ok(())
    }

    /// The time of the earliest pending timer.
    pub fn earliest(&self) -> Result<Option<i64>, StateError> {
        if self.earliest.get() == EarliestTimer::Unknown {
            let mut first = None;
            self.table.scan(&time_bytes(i64::MIN), None, |k, _| {
                first = Some(Timer::decode(k).time);
                false
            })?;
            self.earliest.set(first.map_or(EarliestTimer::None, EarliestTimer::At));
        }
        Ok(match self.earliest.get() {
            EarliestTimer::At(t) => Some(t),
            _ => None,
        })
    }

    /// Removes and returns at most `limit` timers due at `watermark` (time ≤ watermark),
    /// earliest first. Call until it returns none: timers registered while firing, if due,
    /// come out of a later call.
    pub fn pop_due(&self, watermark: i64, limit: usize) -> Result<Vec<Timer>, StateError> {
        if self.earliest()?.is_none_or(|t| t > watermark) {
            return Ok(Vec::new());
        }
        let upper = watermark.checked_add(1).map(|t| time_bytes(t).to_vec());
        let mut due = Vec::new();
        let mut last = Vec::new();
        self.table.scan(&time_bytes(i64::MIN), upper.as_deref(), |k, _| {
            due.push(Timer::decode(k));
            last.clear();
            last.extend_from_slice(k);
            due.len() < limit
        })?;
        if let Some(first) = due.first() {
            // Everything from the first due timer up to and including the last one read:
            // no other key lies between them.
            last.push(0);
            self.table.delete_range(&first.encode(), Some(&last))?;
        }
        self.earliest.set(EarliestTimer::Unknown);
        Ok(due)
    }
}
