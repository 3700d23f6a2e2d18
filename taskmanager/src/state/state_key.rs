//! The byte layout of every key in an operator subtask's RocksDB instance, for every kind
//! of state. Fixed, so that restore and rescaling can read any operator's state:
//!
//! - value, list and merging state: `namespace | key group | key`
//! - map state: `namespace | key group | key length (u32) | key | map key`
//! - timers: `time | key group | namespace | key`
//!
//! Namespaces and times are 8 bytes, big-endian, sign bit flipped (so negative times sort
//! first); the key group is 2 bytes, big-endian. The first 8 bytes are a time everywhere
//! (a window's start, a timer's time): RocksDB's key order is then time order, and
//! everything due at a time is one range scan. The key group always sits at bytes 8..10,
//! where a restore filters on it without knowing the kind of state.

/// Bytes before the key: namespace or time, then key group.
pub const PREFIX_LEN: usize = 10;

/// The bytes of a namespace or time.
pub fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_at(bytes: &[u8]) -> i64 {
    (u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")) ^ (1 << 63)) as i64
}

/// The namespace (or time) a stored key starts with.
pub fn namespace_of(key: &[u8]) -> i64 {
    time_at(key)
}

/// The key group of any stored key.
pub fn key_group_of(key: &[u8]) -> u32 {
    u16::from_be_bytes([key[8], key[9]]) as u32
}

/// The first key at or after namespace `ns`, and the first after it: the bounds of a
/// namespace's rows (`None` past the last namespace).
pub fn namespace_bounds(ns: i64) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        time_bytes(ns).to_vec(),
        ns.checked_add(1).map(|n| time_bytes(n).to_vec()),
    )
}

/// A value, list or merging state's key.
pub fn state_key(ns: i64, key_group: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX_LEN + key.len());
    k.extend_from_slice(&time_bytes(ns));
    k.extend_from_slice(&(key_group as u16).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The prefix every entry of one map (namespace, key) shares; the map key follows it.
pub fn map_prefix(ns: i64, key_group: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(PREFIX_LEN + 4 + key.len() + 16);
    k.extend_from_slice(&time_bytes(ns));
    k.extend_from_slice(&(key_group as u16).to_be_bytes());
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The smallest key greater than every key starting with `prefix` (`None` when no such
/// key exists: the prefix is all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// An event-time timer: fires once the watermark reaches `time`, for one key in one
/// namespace. Two registrations of the same timer are one timer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub time: i64,
    pub key_group: u32,
    pub namespace: i64,
    pub key: Vec<u8>,
}

impl Timer {
    pub fn encode(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(PREFIX_LEN + 8 + self.key.len());
        k.extend_from_slice(&time_bytes(self.time));
        k.extend_from_slice(&(self.key_group as u16).to_be_bytes());
        k.extend_from_slice(&time_bytes(self.namespace));
        k.extend_from_slice(&self.key);
        k
    }

    pub fn decode(k: &[u8]) -> Self {
        Self {
            time: time_at(k),
            key_group: key_group_of(k),
            namespace: time_at(&k[PREFIX_LEN..]),
            key: k[PREFIX_LEN + 8..].to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_time_order_and_layouts_round_trip() {
        let times = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let keys: Vec<Vec<u8>> = times.iter().map(|t| state_key(*t, 3, b"k")).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(namespace_of(&keys[1]), -5);
        assert_eq!(key_group_of(&keys[1]), 3);
        assert_eq!(namespace_bounds(i64::MAX).1, None);

        let t = Timer {
            time: -3,
            key_group: 127,
            namespace: 42,
            key: b"user".to_vec(),
        };
        assert_eq!(Timer::decode(&t.encode()), t);
        assert_eq!(key_group_of(&t.encode()), 127);

        // Map keys of one (namespace, key) never interleave with another key's: "a"
        // followed by map key "b" is not the key "ab".
        let a = map_prefix(0, 1, b"a");
        let ab = map_prefix(0, 1, b"ab");
        assert!(!ab.starts_with(&a) && !a.starts_with(&ab));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }
}
