//! Key groups: the unit of keyed state and of hash partitioning, as in Flink. A key hashes
//! to one of `max_parallelism` key groups; a contiguous range of key groups belongs to each
//! parallel subtask. Keeping the key-group count fixed per job is what later lets keyed
//! state be rescaled without rehashing every key.

use serde::{Deserialize, Serialize};

/// Default number of key groups (Flink's default lower bound).
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The key group of a key hash.
#[inline]
pub fn key_group(hash: u64, max_parallelism: u32) -> u32 {
    (hash % max_parallelism as u64) as u32
}

/// The subtask that owns a key group (Flink's `computeOperatorIndexForKeyGroup`).
#[inline]
pub fn subtask_for_key_group(key_group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    ((key_group as u64 * parallelism as u64) / max_parallelism as u64) as u32
}

/// The key groups `[start, end)` one subtask owns (Flink's
/// `computeKeyGroupRangeForOperatorIndex`): the inverse of [`subtask_for_key_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyGroupRange {
    pub start: u32,
    pub end: u32,
}

impl KeyGroupRange {
    pub fn of_subtask(subtask: u32, max_parallelism: u32, parallelism: u32) -> Self {
        let (s, m, p) = (subtask as u64, max_parallelism as u64, parallelism as u64);
        Self {
            start: (s * m).div_ceil(p) as u32,
            end: ((s + 1) * m).div_ceil(p) as u32,
        }
    }

    pub fn contains(&self, key_group: u32) -> bool {
        (self.start..self.end).contains(&key_group)
    }

    pub fn overlaps(&self, other: &KeyGroupRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A stable 64-bit mix for integer keys (SplitMix64's finalizer): the same key lands in
/// the same key group in every process and every release.
#[inline]
pub fn hash_i64(v: i64) -> u64 {
    let mut z = (v as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Folds the hash of one more key column into a row's running hash.
#[inline]
pub fn combine(acc: u64, h: u64) -> u64 {
    hash_i64((acc.rotate_left(5) ^ h) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_cover_all_subtasks_evenly() {
        let mut per = [0u32; 3];
        for kg in 0..DEFAULT_MAX_PARALLELISM {
            per[subtask_for_key_group(kg, DEFAULT_MAX_PARALLELISM, 3) as usize] += 1;
        }
        assert_eq!(per.iter().sum::<u32>(), DEFAULT_MAX_PARALLELISM);
        assert!(per.iter().all(|&n| (42..=43).contains(&n)), "{per:?}");
    }

    #[test]
    fn a_subtask_range_holds_exactly_the_key_groups_routed_to_it() {
        for p in [1, 2, 3, 7, 128] {
            for s in 0..p {
                let range = KeyGroupRange::of_subtask(s, DEFAULT_MAX_PARALLELISM, p);
                for kg in 0..DEFAULT_MAX_PARALLELISM {
                    let routed = subtask_for_key_group(kg, DEFAULT_MAX_PARALLELISM, p) == s;
                    assert_eq!(range.contains(kg), routed, "p={p} s={s} kg={kg}");
                }
            }
        }
    }
}
