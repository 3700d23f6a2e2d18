//! Writes the benchmark workloads' input as files, for tests that check Weir's output
//! against an independent reader (DuckDB) of the same input, prints the reference dump,
//! and writes the ad joiner's dimension tables (users for Redis, ads as Parquet).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use std::sync::Arc;

use anyhow::Result;
use arrow::array::{Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use clap::{Parser, Subcommand};
use parquet::arrow::ArrowWriter;
use weir_taskmanager::connectors::generator::datagen::{dump, mix64, w2};

#[derive(Parser)]
#[command(about = "Generate Weir's benchmark inputs")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// W2 log records as JSON lines, g = 0..events in order.
    W2 {
        #[arg(long)]
        events: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// The first K events of every workload, in the reference `bench.Main dump` format.
    Dump { k: u64 },
    /// The ad joiner's users `0..count` as Redis commands for `redis-cli --pipe`:
    /// `HSET user:<id> segment <0..15> country <code>`.
    Users {
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
    },
    /// The ad joiner's ads (every `ad_id` of W1, 0..100000) as one Parquet file: ad_id,
    /// advertiser_id, category.
    Ads {
        #[arg(long)]
        out: PathBuf,
    },
}

const COUNTRIES: [&str; 8] = ["us", "de", "fr", "jp", "br", "in", "gb", "kr"];
const CATEGORIES: [&str; 6] = ["games", "retail", "travel", "finance", "food", "media"];

fn resp(w: &mut impl Write, args: &[&[u8]]) -> std::io::Result<()> {
    write!(w, "*{}\r\n", args.len())?;
    for a in args {
        write!(w, "${}\r\n", a.len())?;
        w.write_all(a)?;
        w.write_all(b"\r\n")?;
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::W2 { events, out } => {
            let mut w = BufWriter::with_capacity(1 << 20, File::create(&out)?);
            let mut line = Vec::with_capacity(256);
            for g in 0..events {
                line.clear();
                w2::json_into(g, &mut line);
                line.push(b'\n');
                w.write_all(&line)?;
            }
            w.flush()?;
        }
        Cmd::Dump { k } => print!("{}", dump(k)),
        Cmd::Users { count } => {
            let mut w = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            for id in 0..count {
                let h = mix64(id ^ 0x5553_4552);
                let segment = (h % 16).to_string();
                let country = COUNTRIES[((h >> 8) % COUNTRIES.len() as u64) as usize];
                let key = format!("user:{id}");
                resp(
                    &mut w,
                    &[
                        b"HSET",
                        key.as_bytes(),
                        b"segment",
                        segment.as_bytes(),
                        b"country",
                        country.as_bytes(),
                    ],
                )?;
            }
            w.flush()?;
        }
        Cmd::Ads { out } => {
            let ads = 100_000;
            let schema = Arc::new(Schema::new(vec![
                Field::new("ad_id", DataType::Int32, false),
                Field::new("advertiser_id", DataType::Int32, false),
                Field::new("category", DataType::Utf8, false),
            ]));
            let h = |ad: i32| mix64(ad as u64 ^ 0x4144_5321);
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int32Array::from_iter_values(0..ads)),
                    Arc::new(Int32Array::from_iter_values((0..ads).map(|a| (h(a) % 5000) as i32))),
                    Arc::new(StringArray::from_iter_values(
                        (0..ads).map(|a| CATEGORIES[((h(a) >> 16) % CATEGORIES.len() as u64) as usize]),
                    )),
                ],
            )?;
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut w = ArrowWriter::try_new(File::create(&out)?, schema, None)?;
            w.write(&batch)?;
            w.close()?;
        }
    }
    Ok(())
}
