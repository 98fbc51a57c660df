//! STIX 2.1 / 2.0 patterning: parse, validate, print, inspect and match indicator patterns.
//!
//! `stix-pattern` is a synchronous, IO-free library. It parses the full pattern grammar (observation
//! operators with their precedence, every comparison operator and literal type, qualifiers), applies the
//! same extra checks as the OASIS reference validator (`stix2-patterns`) so that it accepts and rejects the
//! same patterns, and optionally applies the specification rules the reference does not check
//! ([`ParseOptions::strict`]). Errors carry a 0-based column and an analyst-readable message.
//!
//! Validate a pattern and report where it is wrong:
//!
//! ```no_run
//! use stix_pattern::Pattern;
//!
//! match Pattern::parse("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e'") {
//!     Ok(_) => println!("valid"),
//!     Err(e) => println!("column {:?}: {e}", e.column()),
//! }
//! ```
//!
//! Pull the simple indicator values a connector pushes (single comparisons or ORs of `=`):
//!
//! ```no_run
//! use stix_pattern::Pattern;
//!
//! let p = Pattern::parse("[file:hashes.'SHA-256' = 'aa' OR file:hashes.MD5 = 'bb']")?;
//! for obs in p.simple_observables()? {
//!     println!("{} {:?} {:?}", obs.object_type, obs.path, obs.value.as_str());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Select STIX 2.0, print canonically, inspect, and match observed-data:
//!
//! ```no_run
//! use stix_pattern::{ParseOptions, Pattern, SpecVersion};
//!
//! let opts = ParseOptions { version: SpecVersion::V2_0, ..Default::default() };
//! let p = Pattern::parse_with("[ipv4-addr:value ISSUBSET '10.0.0.0/8']  WITHIN 5 SECONDS", &opts)?;
//! assert_eq!(p.to_string(), "[ipv4-addr:value ISSUBSET '10.0.0.0/8'] WITHIN 5 SECONDS");
//! let inspection = p.inspect();
//! println!("{}", serde_json::to_string(&inspection)?);
//! let data: Vec<serde_json::Value> = vec![/* bundles, observed-data and SCOs */];
//! let matched: bool = p.matches(&data)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod ast;
mod error;
mod inspect;
mod lexer;
mod matcher;
mod parser;

pub use ast::{
    Comparison, ComparisonExpr, Literal, Number, ObjectPath, ObservationExpr, Operator, PathStep,
    Pattern, Qualifier,
};
pub use error::Error;
pub use inspect::{InspectedComparison, Inspection, NotSimple, PathComponent, SimpleObservable};
pub use matcher::{MAX_BINDINGS, MAX_INSTANCES_PER_OBSERVATION, Matcher};

/// The STIX version whose pattern grammar applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SpecVersion {
    /// STIX 2.0: no `EXISTS`; no duplicate-qualifier check; START/STOP also accept quoted timestamps.
    V2_0,
    /// STIX 2.1 (the default).
    #[default]
    V2_1,
}

impl std::str::FromStr for SpecVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "2.0" | "2" | "20" => Ok(SpecVersion::V2_0),
            "2.1" | "21" => Ok(SpecVersion::V2_1),
            other => Err(format!(
                "unknown STIX version '{other}' (expected 2.0 or 2.1)"
            )),
        }
    }
}

/// Parser settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// Grammar version (default 2.1).
    pub version: SpecVersion,
    /// Also enforce specification rules the reference validator does not check: START before STOP,
    /// positive WITHIN / REPEATS, one qualifier of each type on any expression, homogeneous IN sets,
    /// valid IP/CIDR operands, real calendar dates, lower-case hex, spec type names, satisfiable AND,
    /// no `==`, `<>`, `+` signs or comments.
    pub strict: bool,
    /// Maximum nesting of `[`/`(` (default 100). Deeper input is an [`Error::TooDeep`], never a stack
    /// overflow.
    pub max_depth: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            version: SpecVersion::V2_1,
            strict: false,
            max_depth: 100,
        }
    }
}

impl Pattern {
    /// Parses and validates a STIX 2.1 pattern with the reference validator's rules.
    pub fn parse(text: &str) -> Result<Pattern, Error> {
        Self::parse_with(text, &ParseOptions::default())
    }

    /// Parses and validates with explicit options.
    pub fn parse_with(text: &str, options: &ParseOptions) -> Result<Pattern, Error> {
        parser::Parser::new(text, options).parse()
    }

    /// Whether `text` is a valid pattern under `options` (same as `parse_with(..).is_ok()`).
    pub fn is_valid(text: &str, options: &ParseOptions) -> bool {
        Self::parse_with(text, options).is_ok()
    }

    /// What the pattern contains, as the reference inspector reports it.
    pub fn inspect(&self) -> Inspection {
        let mut i = Inspection::default();
        i.walk(&self.root);
        i
    }

    /// The indicator observables of a pattern that is a single observation without qualifiers whose
    /// comparisons are `=` (or `IN`, one observable per value) joined by `OR`.
    pub fn simple_observables(&self) -> Result<Vec<SimpleObservable>, NotSimple> {
        inspect::simple(&self.root)
    }

    /// Whether the pattern matches the given STIX 2.1 content: bundles, observed-data objects and
    /// SCOs (each observed-data's `object_refs` are looked up among the SCOs; 2.0-style embedded
    /// `objects` dictionaries are read too).
    ///
    /// This compiles the pattern's regular expressions on every call; to match many inputs, build a
    /// [`Matcher`] once with [`Pattern::matcher`].
    pub fn matches(&self, data: &[serde_json::Value]) -> Result<bool, Error> {
        self.matcher()?.matches(data)
    }

    /// Like [`Pattern::matches`], returning the ids of the observed-data of one matching binding.
    pub fn first_match(&self, data: &[serde_json::Value]) -> Result<Option<Vec<String>>, Error> {
        self.matcher()?.first_match(data)
    }

    /// Prepares the pattern for repeated matching (fails if a MATCHES regular expression or an
    /// ISSUBSET/ISSUPERSET operand cannot be compiled).
    pub fn matcher(&self) -> Result<Matcher<'_>, Error> {
        Matcher::new(self)
    }
}

impl std::str::FromStr for Pattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Pattern::parse(s)
    }
}
