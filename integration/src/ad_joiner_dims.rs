//! The ad joiner's dimension tables for tests and benchmarks: users `0..users` in a real
//! Redis started for the run (`weir-datagen users | redis-cli --pipe`), and the ads as
//! Parquet snapshots for the hours W1's events lie in (`weir-datagen ads`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::binary;
use crate::redis_server::RedisServer;

pub struct AdJoinerDims {
    pub redis: RedisServer,
    /// The file of the ads snapshot the lookup ends on (00:00's).
    pub ads: PathBuf,
    /// The snapshot pattern to give the lookup (`<dir>/dt=%Y-%m-%d/hour=%H`).
    pub ads_pattern: String,
}

impl AdJoinerDims {
    pub fn create(dir: &Path, users: u64) -> Result<Self> {
        let redis = RedisServer::start(&dir.join("redis"))?;
        let mut datagen = Command::new(binary("weir-datagen"))
            .args(["users", "--count", &users.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("weir-datagen users")?;
        let loaded = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "--pipe"])
            .stdin(datagen.stdout.take().context("weir-datagen's stdout")?)
            .output()
            .context("redis-cli --pipe")?;
        datagen.wait()?;
        if !loaded.status.success() || redis.keys()? != users {
            bail!(
                "loading {users} users into Redis: {}",
                String::from_utf8_lossy(&loaded.stderr)
            );
        }
        // W1's events lie in the last second of 2023 and the first minutes of 2024: a
        // snapshot for each hour, so the lookup starts on 23:00's and switches to 00:00's.
        let root = dir.join("dims/ads");
        let ads = root.join("dt=2024-01-01/hour=00/part-0.parquet");
        for file in [&root.join("dt=2023-12-31/hour=23/part-0.parquet"), &ads] {
            let status = Command::new(binary("weir-datagen"))
                .args(["ads", "--out"])
                .arg(file)
                .status()
                .context("weir-datagen ads")?;
            if !status.success() {
                bail!("weir-datagen ads failed");
            }
        }
        Ok(Self {
            redis,
            ads,
            ads_pattern: format!("{}/dt=%Y-%m-%d/hour=%H", root.display()),
        })
    }

    /// The `--set` overrides that point `examples/ad-joiner.json` at these tables.
    pub fn overrides(&self) -> Vec<String> {
        vec![
            format!("operators.1.lookup_join.from.redis.url={}", self.redis.url()),
            format!("operators.2.lookup_join.from.parquet.path={}", self.ads_pattern),
        ]
    }
}
