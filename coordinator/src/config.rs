//! Configuration, layered: built-in defaults, then the TOML file (`--config`), then
//! environment variables and flags (clap reads both).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::LocalArgs;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub local: LocalSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    pub task_managers: Option<usize>,
    pub slots: Option<usize>,
    pub work_dir: Option<PathBuf>,
    pub progress_ms: Option<u64>,
    pub channel_capacity: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
}

pub fn load_config(path: Option<&Path>) -> Result<ConfigFile, ConfigError> {
    let Some(path) = path else {
        return Ok(ConfigFile::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })
}

/// Settings of one `coordinator local` run, every layer applied.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub task_managers: usize,
    /// `None`: as many as the job needs.
    pub slots: Option<usize>,
    pub work_dir: PathBuf,
    pub progress_ms: u64,
    pub channel_capacity: usize,
}

impl LocalConfig {
    pub fn resolve(file: &ConfigFile, args: &LocalArgs) -> Self {
        let f = &file.local;
        Self {
            task_managers: args.task_managers.or(f.task_managers).unwrap_or(1).max(1),
            slots: args.slots.or(f.slots),
            work_dir: args
                .work_dir
                .clone()
                .or_else(|| f.work_dir.clone())
                .unwrap_or_else(|| PathBuf::from("weir-work")),
            progress_ms: args.progress_ms.or(f.progress_ms).unwrap_or(1000),
            channel_capacity: f
                .channel_capacity
                .unwrap_or(weir_taskmanager::runtime::job_deployment::DEFAULT_CHANNEL_CAPACITY),
        }
    }
}
