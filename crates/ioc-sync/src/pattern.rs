//! The bridge to `stix-pattern`: pattern text -> the `=` comparisons of a simple pattern.

use stix_pattern::{NotSimple, Pattern};

use crate::mapping::{Comparison, Skip, SkipReason};

/// Parses `text` and returns its comparisons when it is one comparison or an `OR` of `=` comparisons
/// in a single observation without qualifiers; otherwise the reason it is skipped.
pub(crate) fn comparisons(text: &str) -> Result<Vec<Comparison>, Skip> {
    let pattern =
        Pattern::parse(text).map_err(|e| Skip::new(SkipReason::InvalidPattern, e.to_string()))?;
    let observables = pattern.simple_observables().map_err(|e| {
        let reason = match &e {
            NotSimple::AndComparison | NotSimple::MultipleObservations => SkipReason::AndPattern,
            NotSimple::Qualifier => SkipReason::Qualifier,
            _ => SkipReason::UnsupportedOperator,
        };
        Skip::new(reason, e.to_string())
    })?;
    Ok(observables
        .into_iter()
        .map(|o| Comparison {
            object_type: o.object_type,
            path: o.path,
            value: o.value.as_str().map(str::to_string),
        })
        .collect())
}
