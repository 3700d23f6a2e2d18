//! A minimal HTTP/1.1 client for tests (one request per connection, with a timeout), and
//! a parser for the Prometheus text format `/metrics` answers with.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

const TIMEOUT: Duration = Duration::from_secs(10);

/// An answer: status code, headers (lower-case names) and body.
pub struct HttpResponse {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// `GET path` on `address` with extra `headers`.
pub fn http_get(address: &str, path: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
    request(address, "GET", path, headers, "")
}

/// Sends one request and reads the whole answer (`Connection: close`).
pub fn request(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes())?;
    // Read until the answer is complete by its own framing: some servers (ChromeDriver)
    // keep the connection open despite `Connection: close`.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let (head_len, headers_text) = loop {
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("reading {path} from {address}"))?;
        if n == 0 {
            bail!("{address} closed the connection before answering {path}");
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (i + 4, String::from_utf8_lossy(&raw[..i]).to_string());
        }
    };
    let mut lines = headers_text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {headers_text:?}"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked"));
    let length: Option<usize> = headers.get("content-length").and_then(|v| v.parse().ok());
    loop {
        let body = &raw[head_len..];
        let complete = match (length, chunked) {
            (Some(n), _) => body.len() >= n,
            (None, true) => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            (None, false) => false,
        };
        if complete {
            break;
        }
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("reading {path} from {address}"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[head_len..]).to_string();
    let body = if chunked { dechunk(&rest)? } else { rest };
    Ok(HttpResponse { status, headers, body })
}

fn dechunk(mut rest: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(|| anyhow!("bad chunk"))?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// One sample of a scrape: name (with `_total` for counters), labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus / OpenMetrics text format (label values without `,` or `}`
/// inside quotes suffice for Weir's).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter_map(|kv| kv.split_once("=\""))
                .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// Scrapes `/metrics` at `address`.
pub fn scrape(address: &str) -> Result<Vec<Sample>> {
    let r = http_get(address, "/metrics", &[])?;
    anyhow::ensure!(r.status == 200, "GET /metrics on {address}: {} {}", r.status, r.body);
    Ok(parse_metrics(&r.body))
}
