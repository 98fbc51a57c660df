//! triage (see README).
