//! Weir's worker: the operator runtime (one actix actor per subtask chain, bounded
//! channels between them), the connectors (generator, files, Parquet), the formats and
//! the operators.

pub mod connectors;
pub mod dead_letter;
pub mod error;
pub mod exchange;
pub mod file_name;
pub mod formats;
pub mod leader_client;
pub mod metrics;
pub mod operators;
pub mod runtime;
pub mod shutdown_signal;
pub mod state;
pub mod transport;
pub mod worker;

pub use error::TaskError;
