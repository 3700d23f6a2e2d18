//! Checkpoint storage addressed by URL. Everything goes through `object_store`, so
//! `file://` (built in), and `s3://`, `gs://`, `az://`, `hdfs://`, `viewfs://` (cargo
//! features `s3`, `gcs`, `azure`, `hdfs`) are the same code here. Paths are relative to
//! the URL's root.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use url::Url;

/// A single file transfer that takes longer than this has stalled.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("checkpoint storage {url}: {message}")]
    Url { url: String, message: String },
    #[error("checkpoint storage {url}, {path}: {source}")]
    Store {
        url: String,
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("local file {}: {source}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint storage {url}, {path}: no progress for {TRANSFER_TIMEOUT:?}")]
    Timeout { url: String, path: String },
    #[error("the upload's operator stopped")]
    Stopped,
}

fn not_built_in(scheme: &str) -> String {
    format!("the {scheme} scheme is not built into this binary (cargo features s3, gcs, azure, hdfs)")
}

/// HDFS through hdfs-native: the name node (or name service, from the Hadoop
/// configuration in `HADOOP_CONF_DIR`) is the URL's authority, the root its path.
#[cfg(feature = "hdfs")]
fn open_hdfs(url: &Url) -> Result<(Box<dyn ObjectStore>, StorePath), String> {
    let mut base = url.clone();
    base.set_path("/");
    let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
        .with_url(base.as_str())
        .build()
        .map_err(|e| e.to_string())?;
    let root = StorePath::from_url_path(url.path()).map_err(|e| e.to_string())?;
    Ok((Box::new(store), root))
}

#[cfg(not(feature = "hdfs"))]
fn open_hdfs(url: &Url) -> Result<(Box<dyn ObjectStore>, StorePath), String> {
    Err(not_built_in(url.scheme()))
}

#[derive(Clone)]
pub struct CheckpointStorage {
    url: String,
    store: Arc<dyn ObjectStore>,
    root: StorePath,
    /// The root directory when the storage is `file://`.
    local_root: Option<PathBuf>,
}

impl std::fmt::Debug for CheckpointStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl CheckpointStorage {
    /// Opens the storage at `url`; refuses schemes this build does not support.
    pub fn open(url: &str) -> Result<Self, StorageError> {
        let bad = |message: String| StorageError::Url {
            url: url.to_string(),
            message,
        };
        let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if parsed.scheme() == "file" && !parsed.path().starts_with('/') {
            return Err(bad("a file:// URL needs an absolute path".into()));
        }
        let (store, root) = match parsed.scheme() {
            "hdfs" | "viewfs" => open_hdfs(&parsed).map_err(bad)?,
            // Credentials and endpoints of cloud stores come from the environment
            // (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, ...), as the object_store builders
            // name them.
            _ => object_store::parse_url_opts(&parsed, std::env::vars()).map_err(|e| match e {
                object_store::Error::Generic { .. } if parsed.scheme() != "file" => bad(not_built_in(parsed.scheme())),
                e => bad(e.to_string()),
            })?,
        };
        let local_root = (parsed.scheme() == "file").then(|| PathBuf::from(parsed.path()));
        if let Some(dir) = &local_root {
            std::fs::create_dir_all(dir).map_err(|source| StorageError::Local {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Self {
            url: url.to_string(),
            store: Arc::from(store),
            root,
            local_root,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn at(&self, path: &str) -> StorePath {
        path.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |acc, part| acc.join(part))
    }

    fn store_error(&self, path: &str) -> impl FnOnce(object_store::Error) -> StorageError {
        let (url, path) = (self.url.clone(), path.to_string());
        move |source| StorageError::Store { url, path, source }
    }

    fn timeout(&self, path: &str) -> StorageError {
        StorageError::Timeout {
            url: self.url.clone(),
            path: path.to_string(),
        }
    }

    /// Copies a local file to `path`, streaming (large files go up in parts).
    pub async fn upload(&self, local: &Path, path: &str) -> Result<u64, StorageError> {
        let copy = async {
            let local_err = |source| StorageError::Local {
                path: local.to_path_buf(),
                source,
            };
            let mut file = tokio::fs::File::open(local).await.map_err(local_err)?;
            let mut writer = BufWriter::new(self.store.clone(), self.at(path));
            let bytes = tokio::io::copy(&mut file, &mut writer)
                .await
                .map_err(|source| StorageError::Local {
                    path: local.to_path_buf(),
                    source,
                })?;
            writer.shutdown().await.map_err(|source| StorageError::Local {
                path: local.to_path_buf(),
                source,
            })?;
            Ok(bytes)
        };
        tokio::time::timeout(TRANSFER_TIMEOUT, copy)
            .await
            .map_err(|_| self.timeout(path))?
    }

    /// Copies `path` to a new local file.
    pub async fn download(&self, path: &str, local: &Path) -> Result<u64, StorageError> {
        let copy = async {
            let local_err = |source| StorageError::Local {
                path: local.to_path_buf(),
                source,
            };
            let got = self.store.get(&self.at(path)).await.map_err(self.store_error(path))?;
            let mut stream = got.into_stream();
            let mut file = tokio::fs::File::create(local).await.map_err(local_err)?;
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(self.store_error(path))?;
                bytes += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(local_err)?;
            }
            file.sync_all().await.map_err(local_err)?;
            Ok(bytes)
        };
        tokio::time::timeout(TRANSFER_TIMEOUT, copy)
            .await
            .map_err(|_| self.timeout(path))?
    }

    /// Copies an object within this storage.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        tokio::time::timeout(TRANSFER_TIMEOUT, self.store.copy(&self.at(from), &self.at(to)))
            .await
            .map_err(|_| self.timeout(from))?
            .map_err(self.store_error(from))
    }

    /// Writes a small object in one piece.
    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        tokio::time::timeout(TRANSFER_TIMEOUT, self.store.put(&self.at(path), bytes.into()))
            .await
            .map_err(|_| self.timeout(path))?
            .map_err(self.store_error(path))?;
        Ok(())
    }

    /// Reads a small object whole.
    pub async fn get(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        let read = async {
            let got = self.store.get(&self.at(path)).await.map_err(self.store_error(path))?;
            got.bytes().await.map_err(self.store_error(path))
        };
        let bytes = tokio::time::timeout(TRANSFER_TIMEOUT, read)
            .await
            .map_err(|_| self.timeout(path))??;
        Ok(bytes.to_vec())
    }

    /// Every object under `prefix`, as paths relative to the root.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let root_parts = self.root.parts().count();
        let list = async {
            let mut out = Vec::new();
            let mut stream = self.store.list(Some(&self.at(prefix)));
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(self.store_error(prefix))?;
                let rel: Vec<String> = meta
                    .location
                    .parts()
                    .skip(root_parts)
                    .map(|p| p.as_ref().to_string())
                    .collect();
                out.push(rel.join("/"));
            }
            Ok(out)
        };
        tokio::time::timeout(TRANSFER_TIMEOUT, list)
            .await
            .map_err(|_| self.timeout(prefix))?
    }

    /// Deletes everything under `prefix`; returns how many objects there were. On a
    /// local file system the directory goes too: a writer killed in the middle of a put
    /// leaves its staging file (`name#n`), which object_store's listing never shows.
    pub async fn delete_tree(&self, prefix: &str) -> Result<usize, StorageError> {
        let paths = self.list(prefix).await?;
        for path in &paths {
            self.delete(path).await?;
        }
        if let Some(root) = &self.local_root {
            let dir = prefix.split('/').fold(root.clone(), |acc, part| acc.join(part));
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StorageError::Local { path: dir, source }),
            }
        }
        Ok(paths.len())
    }

    /// Deletes `path`; a missing object is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), StorageError> {
        match tokio::time::timeout(TRANSFER_TIMEOUT, self.store.delete(&self.at(path))).await {
            Err(_) => Err(self.timeout(path)),
            Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(self.store_error(path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_go_up_and_come_back_under_the_url_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ckpt");
        let storage = CheckpointStorage::open(&format!("file://{}", root.display())).unwrap();
        let local = dir.path().join("a.sst");
        std::fs::write(&local, vec![7u8; 3 * 1024 * 1024]).unwrap();
        assert_eq!(
            storage.upload(&local, "job/op-0/shared/a.sst").await.unwrap(),
            3 * 1024 * 1024
        );
        assert!(root.join("job/op-0/shared/a.sst").is_file());
        storage.put("job/chk-1/_metadata", b"{}".to_vec()).await.unwrap();
        let mut listed = storage.list("job").await.unwrap();
        listed.sort();
        assert_eq!(listed, ["job/chk-1/_metadata", "job/op-0/shared/a.sst"]);
        let back = dir.path().join("back.sst");
        storage.download("job/op-0/shared/a.sst", &back).await.unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&local).unwrap());
        storage.delete("job/op-0/shared/a.sst").await.unwrap();
        storage.delete("job/op-0/shared/a.sst").await.unwrap();
        assert_eq!(storage.list("job").await.unwrap(), ["job/chk-1/_metadata"]);
        assert!(CheckpointStorage::open("file://relative/dir").is_err());

        // What a writer SIGKILLed in the middle of a put leaves behind.
        std::fs::create_dir_all(root.join("job/op-0-a1/chk-2")).unwrap();
        std::fs::write(root.join("job/op-0-a1/chk-2/OPTIONS-000007#1"), b"half").unwrap();
        storage.put("other/chk-1/_metadata", b"{}".to_vec()).await.unwrap();
        assert_eq!(storage.delete_tree("job").await.unwrap(), 1);
        assert!(!root.join("job").exists());
        assert_eq!(storage.list("other").await.unwrap(), ["other/chk-1/_metadata"]);
        for url in ["s3://bucket/x", "hdfs://namenode:8020/x"] {
            let err = CheckpointStorage::open(url).err().unwrap().to_string();
            assert!(err.contains("not built into this binary"), "{err}");
        }
    }
}
