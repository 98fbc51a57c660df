//! stix-pattern (see README).
