//! opencti
