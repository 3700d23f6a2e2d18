//! Key groups: the unit of keyed state and of hash partitioning, as in Flink. A key hashes
//! to one of `max_parallelism` key groups; a contiguous range of key groups belongs to each
//! parallel subtask. Keeping the key-group count fixed per job is what later lets keyed
//! state be rescaled without rehashing every key.

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
}
