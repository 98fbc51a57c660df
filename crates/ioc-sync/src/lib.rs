//! ioc-sync (see README).
