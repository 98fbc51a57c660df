//! Real Time Response (RTR): single-host and batch sessions, commands, files and scripts.
