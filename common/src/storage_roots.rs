//! Where a cluster lets jobs read and write files: the storage roots an operator of the
//! cluster allows (`coordinator serve --allowed-storage-root`). At submit every path a
//! spec names (file sources, Parquet sinks, Parquet lookup tables, dead letters,
//! checkpoint storage, the savepoint it starts from) must lie under one of them; a spec
//! that names another place is refused, naming the field.
//!
//! Paths are compared as URLs (a plain path is `file://` + the path): same scheme, same
//! authority, and the root's path segments a prefix of the path's (so `/data/weir` allows
//! `/data/weir/x`, not `/data/weirdo`). Relative paths and `..` segments are refused
//! outright: they mean different places on different task managers, or escape the root.

use url::Url;

use crate::JobSpec;
use crate::spec::LookupSourceSpec;
use crate::spec_error::SpecError;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StorageRootError {
    #[error("storage root '{root}': {reason}")]
    BadRoot { root: String, reason: String },
}

/// The places a cluster allows; empty allows everything.
#[derive(Debug, Clone, Default)]
pub struct StorageRoots {
    roots: Vec<Url>,
}

/// A path or URL as a URL, or why it cannot be one.
fn as_url(path: &str) -> Result<Url, String> {
    let url = match Url::parse(path) {
        Ok(u) if u.scheme().len() > 1 => u,
        _ if path.starts_with('/') => {
            Url::from_file_path(path).map_err(|()| "is not a valid absolute path".to_string())?
        }
        _ => return Err("must be an absolute path or a URL".into()),
    };
    // Checked on the text as given: URL parsing resolves dot segments (also percent-encoded
    // ones) for `file:` but not for `hdfs:` or `s3:`.
    let dot_dot = |seg: &str| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == ".."
    };
    if path.split('/').any(dot_dot) {
        return Err("must not contain '..'".into());
    }
    Ok(url)
}

fn segments(url: &Url) -> Vec<&str> {
    url.path_segments()
        .map(|s| s.filter(|seg| !seg.is_empty()).collect())
        .unwrap_or_default()
}

impl StorageRoots {
    pub fn new(roots: &[String]) -> Result<Self, StorageRootError> {
        let roots = roots
            .iter()
            .map(|r| {
                as_url(r).map_err(|reason| StorageRootError::BadRoot {
                    root: r.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { roots })
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Why `path` is not allowed, if it is not.
    pub fn check(&self, path: &str) -> Result<(), String> {
        if self.roots.is_empty() {
            return Ok(());
        }
        let url = as_url(path).map_err(|reason| format!("'{path}' {reason}"))?;
        let inside = self.roots.iter().any(|root| {
            root.scheme() == url.scheme()
                && root.host_str() == url.host_str()
                && root.port() == url.port()
                && segments(&url).starts_with(&segments(root))
        });
        if inside {
            Ok(())
        } else {
            Err(format!(
                "'{path}' is outside the storage roots this cluster allows ({})",
                self.roots.iter().map(Url::as_str).collect::<Vec<_>>().join(", ")
            ))
        }
    }

    /// Every path of `spec` outside the roots, as errors naming the field.
    pub fn check_spec(&self, spec: &JobSpec) -> Vec<SpecError> {
        if self.roots.is_empty() {
            return Vec::new();
        }
        let mut paths: Vec<(String, &str)> = Vec::new();
        for (i, s) in spec.sources.iter().enumerate() {
            if let Some(f) = &s.file {
                paths.push((format!("sources.{i}.file.path"), &f.path));
            }
        }
        for (i, o) in spec.operators.iter().enumerate() {
            if let Some(LookupSourceSpec::Parquet { path, .. }) = o.lookup_join.as_ref().map(|l| &l.from) {
                paths.push((format!("operators.{i}.lookup_join.from.parquet.path"), path));
            }
        }
        for (i, s) in spec.sinks.iter().enumerate() {
            if let Some(p) = &s.parquet {
                paths.push((format!("sinks.{i}.parquet.path"), &p.path));
            }
        }
        if let Some(d) = &spec.dead_letter {
            paths.push(("dead_letter.path".into(), &d.path));
        }
        if let Some(storage) = spec.checkpoint.as_ref().and_then(|c| c.storage.as_deref()) {
            paths.push(("checkpoint.storage".into(), storage));
        }
        paths
            .into_iter()
            .filter_map(|(field, path)| self.check(path).err().map(|m| SpecError::new(field, m)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> StorageRoots {
        StorageRoots::new(&["/data/weir".into(), "hdfs://nn:8020/warehouse".into()]).unwrap()
    }

    #[test]
    fn paths_under_a_root_pass_and_others_are_refused() {
        let r = roots();
        for ok in [
            "/data/weir",
            "/data/weir/out",
            "file:///data/weir/out/x",
            "hdfs://nn:8020/warehouse/logs/dt=%Y-%m-%d",
        ] {
            assert_eq!(r.check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/data/weirdo",
            "/etc/passwd",
            "/data",
            "hdfs://other:8020/warehouse/logs",
            "hdfs://nn:9000/warehouse/logs",
            "s3://bucket/data/weir",
            "file://host/data/weir/x",
        ] {
            let e = r.check(bad).unwrap_err();
            assert!(e.contains("outside the storage roots"), "{bad}: {e}");
        }
    }

    #[test]
    fn relative_paths_and_dot_dot_are_refused() {
        let r = roots();
        assert!(r.check("out/x").unwrap_err().contains("absolute"));
        assert!(r.check("/data/weir/../../etc").unwrap_err().contains(".."));
        assert!(r.check("hdfs://nn:8020/warehouse/../tmp").unwrap_err().contains(".."));
        assert!(r.check("file:///data/weir/%2e%2e/x").unwrap_err().contains(".."));
    }

    #[test]
    fn no_roots_allow_everything_and_bad_roots_are_refused() {
        assert_eq!(StorageRoots::default().check("relative/x"), Ok(()));
        assert!(matches!(
            StorageRoots::new(&["relative".into()]),
            Err(StorageRootError::BadRoot { .. })
        ));
    }
}
