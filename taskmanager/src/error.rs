//! Errors that fail a subtask, each saying which job part and which file or record.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{vertex}: arrow error: {source}")]
    Arrow {
        vertex: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{vertex}: expression error: {message}")]
    Expression { vertex: String, message: String },
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parquet file {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{0} stopped unexpectedly")]
    Disconnected(String),
    /// Another subtask this one exchanges data with went away: a consequence of a failure
    /// elsewhere, whose own report says what went wrong.
    #[error("{0} went away (a consequence of its own failure)")]
    PeerGone(String),
    #[error("{vertex}: {message}")]
    Invalid { vertex: String, message: String },
    /// An external system (a broker, a store) refused or failed a request.
    #[error("{vertex}: {message}")]
    Connector { vertex: String, message: String },
    /// A network channel between task managers failed (peer gone, bad frame).
    #[error("exchange channel {channel}: {message}")]
    Exchange { channel: String, message: String },
    #[error(transparent)]
    State(Box<crate::state::keyed_state_backend::StateError>),
}

impl From<crate::state::keyed_state_backend::StateError> for TaskError {
    fn from(e: crate::state::keyed_state_backend::StateError) -> Self {
        TaskError::State(Box::new(e))
    }
}

impl TaskError {
    /// Whether this failure is only the echo of another subtask's failure.
    pub fn is_consequence(&self) -> bool {
        matches!(self, TaskError::PeerGone(_) | TaskError::Exchange { .. })
    }

    pub fn arrow(vertex: &str, source: arrow::error::ArrowError) -> Self {
        TaskError::Arrow {
            vertex: vertex.to_string(),
            source,
        }
    }

    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TaskError::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
