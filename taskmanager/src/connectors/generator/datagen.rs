//! The generators' arithmetic, exactly as the workload definitions give it: every event is
//! a pure function of its index `g`, with wrapping unsigned 64-bit arithmetic.

/// 2024-01-01T00:00:00Z in epoch milliseconds.
pub const BASE: i64 = 1_704_067_200_000;

#[inline(always)]
pub fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Random field k of event g.
#[inline(always)]
pub fn rnd(g: u64, k: u64) -> u64 {
    mix64(g.wrapping_mul(16).wrapping_add(k))
}

#[inline(always)]
pub fn below(g: u64, k: u64, n: u64) -> u64 {
    rnd(g, k) % n
}

pub mod w1 {
    use super::*;

    #[inline(always)]
    pub fn request_id(g: u64) -> u64 {
        rnd(g, 0)
    }
    #[inline(always)]
    pub fn imp_ts(g: u64) -> i64 {
        BASE + (g / 10) as i64 - below(g, 1, 1000) as i64
    }
    #[inline(always)]
    pub fn user_id(g: u64) -> i64 {
        below(g, 2, 10_000_000) as i64
    }
    #[inline(always)]
    pub fn ad_id(g: u64) -> i32 {
        below(g, 3, 100_000) as i32
    }
    #[inline(always)]
    pub fn campaign_id(g: u64) -> i32 {
        below(g, 4, 1000) as i32
    }
    #[inline(always)]
    pub fn clicked(g: u64) -> bool {
        below(g, 5, 10_000) < 1300
    }
    #[inline(always)]
    pub fn click_ts(g: u64) -> i64 {
        imp_ts(g) + below(g, 6, 30_001) as i64
    }
}

pub mod w2 {
    use super::*;

    fn push_int(buf: &mut Vec<u8>, v: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        let mut v = v;
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        buf.extend_from_slice(&tmp[i..]);
    }

    #[inline(always)]
    pub fn ts(g: u64) -> i64 {
        BASE + (g as i64) * 10 - below(g, 1, 1000) as i64
    }

    /// Appends the exact JSON bytes of record g (no newline).
    pub fn json_into(g: u64, buf: &mut Vec<u8>) {
        let ts = ts(g);
        let lv = below(g, 2, 100);
        let level: &[u8] = match lv {
            0..10 => b"DEBUG",
            10..80 => b"INFO",
            80..95 => b"WARN",
            _ => b"ERROR",
        };
        let svc = below(g, 3, 20) as u8;
        let host = below(g, 4, 100) as u8;
        let (status, msg): (&[u8], &[u8]) = match below(g, 6, 100) {
            0..90 => (b"200", b"ok"),
            90..97 => (b"404", b"not found"),
            _ => (b"500", b"internal error"),
        };
        buf.extend_from_slice(b"{\"ts\":");
        if ts < 0 {
            buf.push(b'-');
        }
        push_int(buf, ts.unsigned_abs());
        buf.extend_from_slice(b",\"level\":\"");
        buf.extend_from_slice(level);
        buf.extend_from_slice(b"\",\"service\":\"svc-");
        buf.extend_from_slice(&[b'0' + svc / 10, b'0' + svc % 10]);
        buf.extend_from_slice(b"\",\"host\":\"host-");
        buf.extend_from_slice(&[b'0', b'0' + host / 10, b'0' + host % 10]);
        buf.extend_from_slice(b"\",\"user_id\":");
        push_int(buf, below(g, 5, 1_000_000));
        buf.extend_from_slice(b",\"status\":");
        buf.extend_from_slice(status);
        buf.extend_from_slice(b",\"latency_ms\":");
        push_int(buf, below(g, 7, 1000));
        buf.extend_from_slice(b",\"path\":\"");
        if below(g, 8, 100) < 5 {
            buf.extend_from_slice(b"/healthz");
        } else {
            buf.extend_from_slice(b"/api/v1/items/");
            push_int(buf, below(g, 9, 10_000));
        }
        buf.extend_from_slice(b"\",\"msg\":\"");
        buf.extend_from_slice(msg);
        buf.extend_from_slice(b"\"}");
    }
}

pub mod w3 {
    use super::*;

    #[inline(always)]
    pub fn key(g: u64) -> i32 {
        below(g, 0, 100_000) as i32
    }
    #[inline(always)]
    pub fn ts(g: u64) -> i64 {
        BASE + (g / 100) as i64 - below(g, 1, 1000) as i64
    }
}

/// The first `k` events of each workload in the format of the reference `bench.Main dump`.
pub fn dump(k: u64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for g in 0..k {
        let c = w1::clicked(g);
        let click = if c { w1::click_ts(g).to_string() } else { "null".into() };
        let _ = writeln!(
            s,
            "w1.impression g={g} request_id={} ts={} user_id={} ad_id={} campaign_id={} clicked={c} click_ts={click}",
            w1::request_id(g),
            w1::imp_ts(g),
            w1::user_id(g),
            w1::ad_id(g),
            w1::campaign_id(g)
        );
    }
    let mut buf = Vec::new();
    for g in 0..k {
        buf.clear();
        w2::json_into(g, &mut buf);
        let _ = writeln!(s, "w2.json g={g} {}", String::from_utf8_lossy(&buf));
    }
    for g in 0..k {
        let _ = writeln!(s, "w3.event g={g} key={} ts={}", w3::key(g), w3::ts(g));
    }
    let first: Vec<String> = (0..)
        .filter(|&g| w1::clicked(g))
        .take(10)
        .map(|g: u64| g.to_string())
        .collect();
    let _ = writeln!(s, "w1.first_clicked_g={}", first.join(","));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample values the reference implementation prints (shared/bench/flink/README.md).
    #[test]
    fn matches_reference_samples() {
        assert_eq!(w1::request_id(0), 16_294_208_416_658_607_535);
        assert_eq!(
            (w1::imp_ts(0), w1::user_id(0), w1::ad_id(0), w1::campaign_id(0)),
            (1_704_067_199_535, 6_348_110, 39_053, 978)
        );
        let first: Vec<u64> = (0..).filter(|&g| w1::clicked(g)).take(6).collect();
        assert_eq!(first, [14, 27, 28, 31, 34, 45]);
        assert_eq!((w3::key(0), w3::ts(0)), (7535, 1_704_067_199_535));
        let mut buf = Vec::new();
        w2::json_into(0, &mut buf);
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            r#"{"ts":1704067199535,"level":"INFO","service":"svc-13","host":"host-078","user_id":358618,"status":404,"latency_ms":487,"path":"/api/v1/items/2228","msg":"not found"}"#
        );
    }

    #[test]
    fn w1_click_count_for_5m_matches_reference() {
        assert_eq!((0..5_000_000u64).filter(|&g| w1::clicked(g)).count(), 650_181);
    }
}
