//! OpenCTI `FilterGroup` evaluation over indicators (stream collection filters and GraphQL queries).

use chrono::DateTime;
use serde_json::Value;

use super::model::{Indicator, Refs};

/// A parsed `FilterGroup`: `{"mode","filters":[{"key","operator","values","mode"}],"filterGroups":[]}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FilterGroup {
    and: bool,
    filters: Vec<Filter>,
    groups: Vec<FilterGroup>,
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    keys: Vec<String>,
    op: String,
    values: Vec<String>,
    and: bool,
}

const KEYS: &[&str] = &[
    "entity_type",
    "revoked",
    "pattern_type",
    "x_opencti_main_observable_type",
    "name",
    "pattern",
    "x_opencti_detection",
    "x_opencti_score",
    "confidence",
    "x_mitre_platforms",
    "indicator_types",
    "objectLabel",
    "labels",
    "createdBy",
    "created_by_ref",
    "objectMarking",
    "valid_until",
    "valid_from",
    "created_at",
    "updated_at",
    "created",
    "modified",
    "id",
    "ids",
    "standard_id",
    "is_inferred",
];

const OPS: &[&str] = &[
    "eq",
    "not_eq",
    "gt",
    "gte",
    "lt",
    "lte",
    "nil",
    "not_nil",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "search",
];

fn mode_is_and(v: &Value, default_and: bool) -> Result<bool, String> {
    match v.as_str() {
        None => Ok(default_and),
        Some("and") => Ok(true),
        Some("or") => Ok(false),
        Some(other) => Err(format!("mode: expected \"and\" or \"or\", got {other:?}")),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl FilterGroup {
    /// Parses a FilterGroup from JSON (a value, or a string holding JSON). The error names the
    /// offending key or operator.
    pub(crate) fn parse(v: &Value) -> Result<FilterGroup, String> {
        if let Value::String(s) = v {
            let inner: Value =
                serde_json::from_str(s).map_err(|e| format!("filters: not JSON: {e}"))?;
            return FilterGroup::parse(&inner);
        }
        let obj = v
            .as_object()
            .ok_or("filters: expected a FilterGroup object")?;
        let and = mode_is_and(obj.get("mode").unwrap_or(&Value::Null), true)?;
        let mut filters = Vec::new();
        for f in obj
            .get("filters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let keys = strings(f.get("key").unwrap_or(&Value::Null));
            if keys.is_empty() {
                return Err("filters: a filter has no key".into());
            }
            if let Some(bad) = keys.iter().find(|k| !KEYS.contains(&k.as_str())) {
                return Err(format!("filters: unsupported filter key {bad:?}"));
            }
            let op = f
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("eq")
                .to_owned();
            if !OPS.contains(&op.as_str()) {
                return Err(format!("filters: unsupported operator {op:?}"));
            }
            let values = strings(f.get("values").unwrap_or(&Value::Null));
            let and = mode_is_and(f.get("mode").unwrap_or(&Value::Null), false)?;
            filters.push(Filter {
                keys,
                op,
                values,
                and,
            });
        }
        let mut groups = Vec::new();
        for g in obj
            .get("filterGroups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            groups.push(FilterGroup::parse(g)?);
        }
        Ok(FilterGroup {
            and,
            filters,
            groups,
        })
    }

    /// Whether `ind` matches.
    pub(crate) fn matches(&self, ind: &Indicator, refs: &Refs) -> bool {
        let mut results = self
            .filters
            .iter()
            .map(|f| f.matches(ind, refs))
            .chain(self.groups.iter().map(|g| g.matches(ind, refs)));
        if self.and {
            results.all(|r| r)
        } else {
            results.any(|r| r) || (self.filters.is_empty() && self.groups.is_empty())
        }
    }
}

fn field(key: &str, i: &Indicator, refs: &Refs) -> Vec<String> {
    let ts = |t: &chrono::DateTime<chrono::Utc>| super::model::ts(t);
    match key {
        "entity_type" => [
            "Indicator",
            "Stix-Domain-Object",
            "Stix-Core-Object",
            "Stix-Object",
            "Basic-Object",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        "revoked" => vec![i.revoked.to_string()],
        "pattern_type" => vec![i.pattern_type.clone()],
        "x_opencti_main_observable_type" => vec![i.main_observable_type.clone()],
        "name" => vec![i.name.clone()],
        "pattern" => vec![i.pattern.clone()],
        "x_opencti_detection" => vec![i.detection.to_string()],
        "x_opencti_score" => i.score.map(|s| s.to_string()).into_iter().collect(),
        "confidence" => vec![i.confidence.to_string()],
        "x_mitre_platforms" => i.platforms.clone().unwrap_or_default(),
        "indicator_types" => i.indicator_types.clone(),
        "objectLabel" | "labels" => i.labels.clone(),
        "createdBy" | "created_by_ref" => i
            .created_by
            .map(|k| &refs.identities[k])
            .map(|s| {
                vec![
                    s["id"].as_str().unwrap_or_default().to_owned(),
                    s["extensions"][super::model::OCTI_EXT]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ]
            })
            .unwrap_or_default(),
        "objectMarking" => i
            .markings
            .iter()
            .flat_map(|k| {
                let s = &refs.markings[*k];
                [
                    s["id"].as_str().unwrap_or_default().to_owned(),
                    s["extensions"][super::model::OCTI_EXT]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    s["name"].as_str().unwrap_or_default().to_owned(),
                ]
            })
            .collect(),
        "valid_until" => vec![ts(&i.valid_until)],
        "valid_from" => vec![ts(&i.valid_from)],
        "created_at" | "created" => vec![ts(&i.created)],
        "updated_at" | "modified" => vec![ts(&i.updated_at)],
        "id" | "ids" => {
            let mut v = vec![i.internal_id.clone(), i.standard_id.clone()];
            v.extend(i.merged_stix_ids.iter().cloned());
            v
        }
        "standard_id" => vec![i.standard_id.clone()],
        "is_inferred" => vec![i.is_inferred.to_string()],
        _ => vec![],
    }
}

/// Orders two scalar strings: numerically, as dates, else lexically.
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        return x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
    }
    if let (Ok(x), Ok(y)) = (
        DateTime::parse_from_rfc3339(a),
        DateTime::parse_from_rfc3339(b),
    ) {
        return x.cmp(&y);
    }
    a.cmp(b)
}

impl Filter {
    fn matches(&self, i: &Indicator, refs: &Refs) -> bool {
        let actual: Vec<String> = self.keys.iter().flat_map(|k| field(k, i, refs)).collect();
        match self.op.as_str() {
            "nil" => return actual.is_empty(),
            "not_nil" => return !actual.is_empty(),
            _ => {}
        }
        let one = |want: &str| -> bool {
            let lw = want.to_lowercase();
            match self.op.as_str() {
                "eq" => actual.iter().any(|a| a.eq_ignore_ascii_case(want)),
                "not_eq" => !actual.iter().any(|a| a.eq_ignore_ascii_case(want)),
                "gt" => actual.iter().any(|a| compare(a, want).is_gt()),
                "gte" => actual.iter().any(|a| compare(a, want).is_ge()),
                "lt" => actual.iter().any(|a| compare(a, want).is_lt()),
                "lte" => actual.iter().any(|a| compare(a, want).is_le()),
                "contains" | "search" => actual.iter().any(|a| a.to_lowercase().contains(&lw)),
                "not_contains" => !actual.iter().any(|a| a.to_lowercase().contains(&lw)),
                "starts_with" => actual.iter().any(|a| a.to_lowercase().starts_with(&lw)),
                "ends_with" => actual.iter().any(|a| a.to_lowercase().ends_with(&lw)),
                _ => false,
            }
        };
        if self.values.is_empty() {
            return true;
        }
        if self.and {
            self.values.iter().all(|v| one(v))
        } else {
            self.values.iter().any(|v| one(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opencti::model::{Gen, refs};
    use serde_json::json;

    #[test]
    fn the_recommended_stream_filter() {
        let refs = refs(3);
        let mut g = Gen::new(3, &refs);
        let now = chrono::Utc::now();
        let mut i = g.indicator(0, now, now);
        let f = FilterGroup::parse(&json!({"mode":"and","filters":[
            {"key":["entity_type"],"operator":"eq","values":["Indicator"],"mode":"or"},
            {"key":["revoked"],"operator":"eq","values":["false"],"mode":"or"}],"filterGroups":[]}))
        .unwrap();
        i.revoked = false;
        assert!(f.matches(&i, &refs));
        i.revoked = true;
        assert!(!f.matches(&i, &refs));
    }

    #[test]
    fn scores_compare_numerically_and_unknown_keys_are_refused() {
        let refs = refs(3);
        let mut g = Gen::new(3, &refs);
        let now = chrono::Utc::now();
        let mut i = g.indicator(0, now, now);
        i.score = Some(80);
        let f = FilterGroup::parse(&json!({"mode":"or","filters":[{"key":"x_opencti_score","operator":"gte","values":["75"]}],"filterGroups":[]})).unwrap();
        assert!(f.matches(&i, &refs));
        i.score = Some(9);
        assert!(!f.matches(&i, &refs));
        let err =
            FilterGroup::parse(&json!({"filters":[{"key":"colour","values":["x"]}]})).unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }
}
