//! The crate's error type.

use thiserror::Error;

/// Why a pattern was rejected, or why matching failed.
///
/// Every variant that comes from a pattern carries the 0-based column (in Unicode code points, as the
/// reference validator counts) of the offending text. The `Display` text names what was wrong, e.g.
/// `syntax error at column 17: expected ']' to close the observation started at column 0`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// The text does not follow the pattern grammar.
    #[error("syntax error at column {column}: {message}")]
    Syntax {
        /// 0-based column.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// The text parses but breaks a rule the reference validator checks (hash values, duplicate
    /// qualifiers, missing brackets).
    #[error("invalid pattern at column {column}: {message}")]
    Invalid {
        /// 0-based column.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// Strict mode only: the pattern breaks a specification rule the reference validator does not check.
    #[error("pattern breaks a specification rule at column {column}: {message}")]
    Strict {
        /// 0-based column.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// Brackets and parentheses nest deeper than [`crate::ParseOptions::max_depth`].
    #[error("pattern nests deeper than {limit} levels at column {column}")]
    TooDeep {
        /// 0-based column of the bracket that went over the limit.
        column: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The matcher could not evaluate the pattern against the data (bad observed-data, a regular
    /// expression the matcher cannot compile, too many candidate bindings).
    #[error("cannot match: {message}")]
    Match {
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// The 0-based column the error points at (`None` for matcher errors).
    pub fn column(&self) -> Option<usize> {
        match self {
            Error::Syntax { column, .. }
            | Error::Invalid { column, .. }
            | Error::Strict { column, .. }
            | Error::TooDeep { column, .. } => Some(*column),
            Error::Match { .. } => None,
        }
    }

    /// The message without the `... at column N:` prefix.
    pub fn message(&self) -> String {
        match self {
            Error::Syntax { message, .. }
            | Error::Invalid { message, .. }
            | Error::Strict { message, .. }
            | Error::Match { message } => message.clone(),
            Error::TooDeep { limit, .. } => format!("pattern nests deeper than {limit} levels"),
        }
    }

    /// Errors of this crate are never worth retrying: the same input fails the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
