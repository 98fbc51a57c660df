//! opencti-client (see README).
