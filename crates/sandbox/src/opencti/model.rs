//! Indicators as OpenCTI stores them, their STIX 2.1 form (`opencti.md` §7) and the seeded generator.

use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};

/// OpenCTI's STIX extension id.
pub(crate) const OCTI_EXT: &str = "extension-definition--ea279b3e-5c71-4632-ac08-831c66a786ba";
/// The MITRE extension id (platforms).
pub(crate) const MITRE_EXT: &str = "extension-definition--322b8f77-262a-4cb8-a915-1e441e00329b";

/// An observable value parsed from a pattern (`observable_values` in the OpenCTI extension).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ObservableValue {
    pub(crate) kind: String,
    pub(crate) value: Option<String>,
    pub(crate) hashes: Vec<(String, String)>,
}

/// One indicator entity, in the platform's terms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Indicator {
    pub(crate) internal_id: String,
    pub(crate) standard_id: String,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) pattern: String,
    pub(crate) pattern_type: String,
    pub(crate) main_observable_type: String,
    pub(crate) observable_values: Vec<ObservableValue>,
    pub(crate) score: Option<u8>,
    pub(crate) detection: bool,
    /// `None`: no MITRE extension at all.
    pub(crate) platforms: Option<Vec<String>>,
    pub(crate) valid_from: DateTime<Utc>,
    pub(crate) valid_until: DateTime<Utc>,
    pub(crate) labels: Vec<String>,
    pub(crate) revoked: bool,
    pub(crate) confidence: u8,
    pub(crate) created: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) indicator_types: Vec<String>,
    /// Index into [`Refs::identities`].
    pub(crate) created_by: Option<usize>,
    /// Indexes into [`Refs::markings`].
    pub(crate) markings: Vec<usize>,
    pub(crate) is_inferred: bool,
    /// STIX ids of entities merged into this one.
    pub(crate) merged_stix_ids: Vec<String>,
}

/// Authors and markings indicators refer to (sent as dependency events).
#[derive(Debug)]
pub(crate) struct Refs {
    pub(crate) identities: Vec<Arc<Value>>,
    pub(crate) markings: Vec<Arc<Value>>,
}

pub(crate) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serializes an indicator as its STIX 2.1 object (what stream events carry in `data`).
pub(crate) struct Stix<'a> {
    pub(crate) ind: &'a Indicator,
    pub(crate) refs: &'a Refs,
}

struct ObsValues<'a>(&'a [ObservableValue]);

impl Serialize for ObsValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for o in self.0 {
            let mut v = serde_json::Map::new();
            v.insert("type".into(), Value::String(o.kind.clone()));
            if let Some(value) = &o.value {
                v.insert("value".into(), Value::String(value.clone()));
            }
            if !o.hashes.is_empty() {
                let h: serde_json::Map<_, _> = o
                    .hashes
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                v.insert("hashes".into(), Value::Object(h));
            }
            seq.serialize_element(&v)?;
        }
        seq.end()
    }
}

struct OctiExt<'a>(&'a Indicator, &'a Refs);

impl Serialize for OctiExt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (i, refs) = (self.0, self.1);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("extension_type", "property-extension")?;
        m.serialize_entry("id", &i.internal_id)?;
        m.serialize_entry("type", "Indicator")?;
        m.serialize_entry("created_at", &ts(&i.created))?;
        m.serialize_entry("updated_at", &ts(&i.updated_at))?;
        m.serialize_entry("is_inferred", &i.is_inferred)?;
        m.serialize_entry("creator_ids", &["88ec0c6a-13ce-5e39-b486-354fe4a7084f"])?;
        let mut stix_ids = vec![i.standard_id.as_str()];
        stix_ids.extend(i.merged_stix_ids.iter().map(String::as_str));
        m.serialize_entry("stix_ids", &stix_ids)?;
        if let Some(idx) = i.created_by {
            m.serialize_entry(
                "created_by_ref_id",
                &refs.identities[idx]["extensions"][OCTI_EXT]["id"],
            )?;
        }
        if let Some(score) = i.score {
            m.serialize_entry("score", &score)?;
        }
        m.serialize_entry("detection", &i.detection)?;
        m.serialize_entry("main_observable_type", &i.main_observable_type)?;
        if !i.observable_values.is_empty() {
            m.serialize_entry("observable_values", &ObsValues(&i.observable_values))?;
        }
        m.end()
    }
}

struct MitreExt<'a>(&'a [String]);

impl Serialize for MitreExt<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("extension_type", "property-extension")?;
        m.serialize_entry("platforms", self.0)?;
        m.end()
    }
}

struct Extensions<'a>(&'a Indicator, &'a Refs);

impl Serialize for Extensions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(OCTI_EXT, &OctiExt(self.0, self.1))?;
        if let Some(p) = &self.0.platforms {
            m.serialize_entry(MITRE_EXT, &MitreExt(p))?;
        }
        m.end()
    }
}

impl Serialize for Stix<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = self.ind;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &i.standard_id)?;
        m.serialize_entry("spec_version", "2.1")?;
        m.serialize_entry("revoked", &i.revoked)?;
        m.serialize_entry("confidence", &i.confidence)?;
        m.serialize_entry("created", &ts(&i.created))?;
        m.serialize_entry("modified", &ts(&i.updated_at))?;
        m.serialize_entry("name", &i.name)?;
        if let Some(d) = &i.description {
            m.serialize_entry("description", d)?;
        }
        if !i.indicator_types.is_empty() {
            m.serialize_entry("indicator_types", &i.indicator_types)?;
        }
        m.serialize_entry("pattern", &i.pattern)?;
        m.serialize_entry("pattern_type", &i.pattern_type)?;
        m.serialize_entry("valid_from", &ts(&i.valid_from))?;
        m.serialize_entry("valid_until", &ts(&i.valid_until))?;
        m.serialize_entry("x_opencti_score", &i.score)?;
        m.serialize_entry("x_opencti_detection", &i.detection)?;
        m.serialize_entry("x_opencti_main_observable_type", &i.main_observable_type)?;
        if let Some(p) = &i.platforms {
            m.serialize_entry("x_mitre_platforms", p)?;
        }
        if !i.labels.is_empty() {
            m.serialize_entry("labels", &i.labels)?;
        }
        if let Some(idx) = i.created_by {
            m.serialize_entry("created_by_ref", &self.refs.identities[idx]["id"])?;
        }
        if !i.markings.is_empty() {
            let ids: Vec<&Value> = i
                .markings
                .iter()
                .map(|k| &self.refs.markings[*k]["id"])
                .collect();
            m.serialize_entry("object_marking_refs", &ids)?;
        }
        m.serialize_entry("type", "indicator")?;
        m.serialize_entry("extensions", &Extensions(i, self.refs))?;
        m.end()
    }
}

impl Indicator {
    /// The STIX object as a JSON value (for diffs and the control API).
    pub(crate) fn to_value(&self, refs: &Refs) -> Value {
        serde_json::to_value(Stix { ind: self, refs }).expect("stix serializes")
    }

    /// The GraphQL `Indicator` node with every field the simulator knows.
    pub(crate) fn to_node(&self, refs: &Refs) -> Value {
        let created_by = self.created_by.map(|k| identity_node(&refs.identities[k]));
        let markings: Vec<Value> = self
            .markings
            .iter()
            .map(|k| marking_node(&refs.markings[*k]))
            .collect();
        let labels: Vec<Value> = self
            .labels
            .iter()
            .map(|l| json!({"id": label_id(l), "value": l, "color": "#ff9800", "__typename": "Label"}))
            .collect();
        let observables: Vec<Value> = self
            .observable_values
            .iter()
            .map(|o| json!({"entity_type": o.kind, "observable_value": o.value.clone().or_else(|| o.hashes.first().map(|h| h.1.clone()))}))
            .collect();
        json!({
            "__typename": "Indicator",
            "id": self.internal_id,
            "standard_id": self.standard_id,
            "entity_type": "Indicator",
            "parent_types": ["Basic-Object", "Stix-Object", "Stix-Core-Object", "Stix-Domain-Object"],
            "spec_version": "2.1",
            "created_at": ts(&self.created),
            "updated_at": ts(&self.updated_at),
            "created": ts(&self.created),
            "modified": ts(&self.updated_at),
            "revoked": self.revoked,
            "confidence": self.confidence,
            "lang": "en",
            "name": self.name,
            "description": self.description,
            "pattern_type": self.pattern_type,
            "pattern_version": "2.1",
            "pattern": self.pattern,
            "indicator_types": self.indicator_types,
            "valid_from": ts(&self.valid_from),
            "valid_until": ts(&self.valid_until),
            "x_opencti_score": self.score,
            "x_opencti_detection": self.detection,
            "x_opencti_main_observable_type": self.main_observable_type,
            "x_mitre_platforms": self.platforms,
            "x_opencti_stix_ids": self.merged_stix_ids,
            "is_inferred": self.is_inferred,
            "createdBy": created_by,
            "objectMarking": markings,
            "objectLabel": labels,
            "observables": {"edges": observables.into_iter().map(|n| json!({"node": n})).collect::<Vec<_>>()},
            "killChainPhases": [],
            "externalReferences": {"edges": []},
            "toStix": serde_json::to_string(&Stix { ind: self, refs }).expect("stix serializes"),
        })
    }
}

fn identity_node(stix: &Value) -> Value {
    json!({
        "__typename": "Organization",
        "id": stix["extensions"][OCTI_EXT]["id"],
        "standard_id": stix["id"],
        "entity_type": "Organization",
        "parent_types": ["Basic-Object", "Stix-Object", "Stix-Core-Object", "Stix-Domain-Object", "Identity"],
        "name": stix["name"],
        "identity_class": "organization",
    })
}

fn marking_node(stix: &Value) -> Value {
    json!({
        "__typename": "MarkingDefinition",
        "id": stix["extensions"][OCTI_EXT]["id"],
        "standard_id": stix["id"],
        "entity_type": "Marking-Definition",
        "definition_type": "TLP",
        "definition": stix["name"],
        "x_opencti_order": 1,
        "x_opencti_color": "#2e7d32",
    })
}

fn label_id(label: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("label:{label}").as_bytes(),
    )
    .to_string()
}

/// Deterministic UUID from the generator.
pub(crate) fn uuid_from(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

/// The authors and TLP markings (deterministic).
pub(crate) fn refs(seed: u64) -> Refs {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_0001);
    let created = "2024-01-01T00:00:00.000Z";
    let identities = ["CIRCL", "Example CERT", "AlienVault"]
        .iter()
        .map(|name| {
            Arc::new(json!({
                "id": format!("identity--{}", uuid_from(&mut rng)),
                "spec_version": "2.1",
                "identity_class": "organization",
                "name": name,
                "created": created,
                "modified": created,
                "confidence": 100,
                "revoked": false,
                "lang": "en",
                "type": "identity",
                "extensions": {OCTI_EXT: {
                    "extension_type": "property-extension",
                    "id": uuid_from(&mut rng),
                    "type": "Organization",
                    "created_at": created,
                    "updated_at": created,
                    "is_inferred": false,
                }},
            }))
        })
        .collect();
    let markings = [
        ("TLP:CLEAR", "clear"),
        ("TLP:GREEN", "green"),
        ("TLP:AMBER", "amber"),
    ]
    .iter()
    .map(|(name, tlp)| {
        Arc::new(json!({
            "id": format!("marking-definition--{}", uuid_from(&mut rng)),
            "spec_version": "2.1",
            "created": created,
            "definition_type": "statement",
            "name": name,
            "definition": {"statement": "copyright"},
            "x_opencti_definition_type": "TLP",
            "x_opencti_definition": name,
            "x_opencti_order": 1,
            "type": "marking-definition",
            "extensions": {OCTI_EXT: {
                "extension_type": "property-extension",
                "id": uuid_from(&mut rng),
                "type": "Marking-Definition",
                "created_at": created,
                "updated_at": created,
                "is_inferred": false,
                "tlp": tlp,
            }},
        }))
    })
    .collect();
    Refs {
        identities,
        markings,
    }
}

/// Quotes a value as a STIX string literal (`\` and `'` escaped).
pub(crate) fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A pattern and what it observes.
pub(crate) struct Shape {
    pub(crate) pattern: String,
    pub(crate) pattern_type: &'static str,
    pub(crate) main_type: &'static str,
    pub(crate) name: String,
    pub(crate) observables: Vec<ObservableValue>,
}

fn obs(kind: &str, value: &str) -> Vec<ObservableValue> {
    vec![ObservableValue {
        kind: kind.into(),
        value: Some(value.into()),
        hashes: vec![],
    }]
}

fn hexs(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("hex digit"))
        .collect()
}

const WORDS: &[&str] = &[
    "update", "secure", "login", "cdn", "mail", "portal", "cloud", "static", "api", "files",
    "track", "verify", "account", "office", "drive", "sync", "news", "shop", "pay", "media",
];
const TLDS: &[&str] = &[
    "com", "net", "org", "info", "ru", "xyz", "top", "io", "biz", "cn",
];

fn domain(rng: &mut StdRng) -> String {
    format!(
        "{}-{}{}.{}",
        WORDS[rng.random_range(0..WORDS.len())],
        WORDS[rng.random_range(0..WORDS.len())],
        rng.random_range(0..10_000),
        TLDS[rng.random_range(0..TLDS.len())]
    )
}

fn ipv4(rng: &mut StdRng) -> String {
    format!(
        "{}.{}.{}.{}",
        rng.random_range(1..224),
        rng.random_range(0..256),
        rng.random_range(0..256),
        rng.random_range(1..255)
    )
}

/// Number of distinct shapes [`shape`] produces.
pub(crate) const SHAPES: usize = 18;

/// One indicator pattern of shape `k` (every observable shape OpenCTI produces, `opencti.md` §7).
pub(crate) fn shape(k: usize, rng: &mut StdRng) -> Shape {
    let stix = |pattern: String, main_type, name: String, observables| Shape {
        pattern,
        pattern_type: "stix",
        main_type,
        name,
        observables,
    };
    match k % SHAPES {
        0 => {
            let v = ipv4(rng);
            stix(
                format!("[ipv4-addr:value = {}]", quote(&v)),
                "IPv4-Addr",
                v.clone(),
                obs("IPv4-Addr", &v),
            )
        }
        1 => {
            let bits = [8u8, 16, 24, 28, 32][rng.random_range(0..5)];
            let v = format!("{}/{bits}", ipv4(rng));
            stix(
                format!("[ipv4-addr:value = {}]", quote(&v)),
                "IPv4-Addr",
                v.clone(),
                obs("IPv4-Addr", &v),
            )
        }
        2 => {
            let v = format!(
                "2a02:{:x}:{:x}:{:x}::{:x}:{:x}",
                rng.random_range(0..0xffffu32),
                rng.random_range(0..0xffffu32),
                rng.random_range(0..0xffffu32),
                rng.random_range(1..0xffffu32),
                rng.random_range(1..0xffffu32)
            );
            stix(
                format!("[ipv6-addr:value = {}]", quote(&v)),
                "IPv6-Addr",
                v.clone(),
                obs("IPv6-Addr", &v),
            )
        }
        3 | 4 => {
            let v = domain(rng);
            stix(
                format!("[domain-name:value = {}]", quote(&v)),
                "Domain-Name",
                v.clone(),
                obs("Domain-Name", &v),
            )
        }
        5 => {
            let v = format!(
                "{}.{}",
                ["ws", "srv", "dc", "vpn"][rng.random_range(0..4)],
                domain(rng)
            );
            stix(
                format!("[hostname:value = {}]", quote(&v)),
                "Hostname",
                v.clone(),
                obs("Hostname", &v),
            )
        }
        6 => {
            let v = format!(
                "http://{}/{}/{}.php?id={}",
                domain(rng),
                WORDS[rng.random_range(0..WORDS.len())],
                hexs(rng, 6),
                rng.random_range(0..1000)
            );
            stix(
                format!("[url:value = {}]", quote(&v)),
                "Url",
                v.clone(),
                obs("Url", &v),
            )
        }
        7 => {
            let v = format!(
                "{}.{}@{}",
                WORDS[rng.random_range(0..WORDS.len())],
                rng.random_range(0..100),
                domain(rng)
            );
            stix(
                format!("[email-addr:value = {}]", quote(&v)),
                "Email-Addr",
                v.clone(),
                obs("Email-Addr", &v),
            )
        }
        8 | 9 => {
            let h = hexs(rng, 64);
            let o = vec![ObservableValue {
                kind: "StixFile".into(),
                value: None,
                hashes: vec![("SHA-256".into(), h.clone())],
            }];
            stix(format!("[file:hashes.'SHA-256' = '{h}']"), "StixFile", h, o)
        }
        10 => {
            let h = hexs(rng, 32);
            let o = vec![ObservableValue {
                kind: "StixFile".into(),
                value: None,
                hashes: vec![("MD5".into(), h.clone())],
            }];
            stix(format!("[file:hashes.MD5 = '{h}']"), "StixFile", h, o)
        }
        11 => {
            // Third-party connectors quote MD5.
            let h = hexs(rng, 32);
            let o = vec![ObservableValue {
                kind: "StixFile".into(),
                value: None,
                hashes: vec![("MD5".into(), h.clone())],
            }];
            stix(format!("[file:hashes.'MD5' = '{h}']"), "StixFile", h, o)
        }
        12 => {
            let h = hexs(rng, 40);
            let o = vec![ObservableValue {
                kind: "StixFile".into(),
                value: None,
                hashes: vec![("SHA-1".into(), h.clone())],
            }];
            stix(format!("[file:hashes.'SHA-1' = '{h}']"), "StixFile", h, o)
        }
        13 => {
            let (a, b, c, d) = (hexs(rng, 64), hexs(rng, 128), hexs(rng, 40), hexs(rng, 32));
            let o = vec![ObservableValue {
                kind: "StixFile".into(),
                value: None,
                hashes: vec![
                    ("SHA-256".into(), a.clone()),
                    ("SHA-512".into(), b.clone()),
                    ("SHA-1".into(), c.clone()),
                    ("MD5".into(), d.clone()),
                ],
            }];
            stix(
                format!(
                    "[file:hashes.'SHA-256' = '{a}' OR file:hashes.'SHA-512' = '{b}' OR file:hashes.'SHA-1' = '{c}' OR file:hashes.MD5 = '{d}']"
                ),
                "StixFile",
                a,
                o,
            )
        }
        14 => {
            let v = format!(
                "{}_{}.exe",
                WORDS[rng.random_range(0..WORDS.len())],
                hexs(rng, 4)
            );
            let o = vec![ObservableValue {
                kind: "StixFile".into(),
                value: Some(v.clone()),
                hashes: vec![],
            }];
            stix(format!("[file:name = {}]", quote(&v)), "StixFile", v, o)
        }
        15 => {
            // Values with a quote and a backslash (escapes).
            let v = format!("o'brien-{}.com", rng.random_range(0..10_000));
            stix(
                format!("[domain-name:value = {}]", quote(&v)),
                "Domain-Name",
                v.clone(),
                obs("Domain-Name", &v),
            )
        }
        16 => {
            let v = format!("http://{}/a\\b'{}", domain(rng), hexs(rng, 4));
            stix(
                format!("[url:value = {}]", quote(&v)),
                "Url",
                v.clone(),
                obs("Url", &v),
            )
        }
        _ => {
            let rule = format!(
                "rule sandbox_{} {{ strings: $a = \"{}\" condition: $a }}",
                hexs(rng, 6),
                hexs(rng, 12)
            );
            Shape {
                name: format!("YARA rule {}", &rule[13..19]),
                pattern: rule,
                pattern_type: "yara",
                main_type: "StixFile",
                observables: vec![],
            }
        }
    }
}

const LABELS: &[&str] = &[
    "malware",
    "c2",
    "phishing",
    "ransomware",
    "apt28",
    "botnet",
    "tor-exit",
    "scanner",
];

/// Generation knobs shared by the initial set, churn and the control API.
pub(crate) struct Gen {
    pub(crate) rng: StdRng,
    pub(crate) refs_identities: usize,
    pub(crate) refs_markings: usize,
}

impl Gen {
    pub(crate) fn new(seed: u64, refs: &Refs) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            refs_identities: refs.identities.len(),
            refs_markings: refs.markings.len(),
        }
    }

    /// A new indicator of shape `k`, created at `at`.
    pub(crate) fn indicator(
        &mut self,
        k: usize,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Indicator {
        let rng = &mut self.rng;
        let shape = shape(k, rng);
        let internal_id = uuid_from(rng);
        let standard_id = format!("indicator--{}", uuid_from(rng));
        let platforms = match rng.random_range(0..50) {
            0..=9 => None,
            10 => Some(vec!["Windows".to_owned()]),
            11 => Some(vec![]),
            12 => Some(vec!["android".to_owned()]),
            _ => {
                let all = ["windows", "macos", "linux"];
                let mut p: Vec<String> = all
                    .iter()
                    .filter(|_| rng.random_bool(0.6))
                    .map(|s| (*s).to_owned())
                    .collect();
                if p.is_empty() {
                    p.push("windows".into());
                }
                Some(p)
            }
        };
        let valid_from = at;
        // About one in ten has expired.
        let valid_until = if rng.random_range(0..10) == 0 {
            now - Duration::days(rng.random_range(1..30))
        } else {
            now + Duration::days(rng.random_range(1..90))
        };
        let valid_until = if valid_until <= valid_from {
            valid_from + Duration::seconds(1)
        } else {
            valid_until
        };
        let labels: Vec<String> = (0..rng.random_range(0..4))
            .map(|_| LABELS[rng.random_range(0..LABELS.len())].to_owned())
            .fold(Vec::new(), |mut acc, l| {
                if !acc.contains(&l) {
                    acc.push(l);
                }
                acc
            });
        Indicator {
            internal_id,
            standard_id,
            description: rng
                .random_bool(0.3)
                .then(|| format!("Observed in campaign {}", hexs(rng, 4))),
            name: shape.name,
            pattern: shape.pattern,
            pattern_type: shape.pattern_type.to_owned(),
            main_observable_type: shape.main_type.to_owned(),
            observable_values: shape.observables,
            score: if rng.random_range(0..40) == 0 {
                None
            } else {
                Some(rng.random_range(0..=100))
            },
            detection: rng.random_bool(0.5),
            platforms,
            valid_from,
            valid_until,
            labels,
            revoked: rng.random_range(0..20) == 0,
            confidence: rng.random_range(50..=100),
            created: at,
            updated_at: at,
            indicator_types: if rng.random_bool(0.5) {
                vec!["malicious-activity".into()]
            } else {
                vec![]
            },
            created_by: Some(rng.random_range(0..self.refs_identities)),
            markings: vec![rng.random_range(0..self.refs_markings)],
            is_inferred: rng.random_range(0..100) == 0,
            merged_stix_ids: vec![],
        }
    }

    /// The initial set: `m` indicators created over the 30 days before `now`, oldest first.
    pub(crate) fn initial(&mut self, m: usize, now: DateTime<Utc>) -> Vec<Indicator> {
        let start = now - Duration::days(30);
        let span_ms = (now - start).num_milliseconds().max(1) as u64;
        let mut out: Vec<Indicator> = (0..m)
            .map(|i| {
                let offset = span_ms * i as u64 / m.max(1) as u64;
                let at = Utc
                    .timestamp_millis_opt(start.timestamp_millis() + offset as i64)
                    .single()
                    .unwrap_or(start);
                self.indicator(i, at, now)
            })
            .collect();
        out.sort_by(|a, b| (a.updated_at, &a.internal_id).cmp(&(b.updated_at, &b.internal_id)));
        out
    }
}

/// The pattern OpenCTI generates for an observable (`opencti.md` §7): `(pattern, main type, values)`.
/// Domain names and e-mail addresses are lower-cased; file hashes are ordered SHA-256, SHA-512,
/// SHA-1, MD5 and `MD5` is left unquoted.
pub(crate) fn pattern_for(
    observable: &Value,
) -> Result<(String, String, Vec<ObservableValue>), String> {
    let kind = observable
        .get("type")
        .and_then(Value::as_str)
        .ok_or("observable.type: required")?;
    let value = observable.get("value").and_then(Value::as_str);
    let simple = |path: &str,
                  main: &str,
                  lower: bool|
     -> Result<(String, String, Vec<ObservableValue>), String> {
        let v = value.ok_or_else(|| format!("observable.value: required for {main}"))?;
        let v = if lower {
            v.to_lowercase()
        } else {
            v.to_owned()
        };
        Ok((
            format!("[{path} = {}]", quote(&v)),
            main.to_owned(),
            obs(main, &v),
        ))
    };
    match kind {
        "IPv4-Addr" => simple("ipv4-addr:value", "IPv4-Addr", false),
        "IPv6-Addr" => simple("ipv6-addr:value", "IPv6-Addr", false),
        "Domain-Name" => simple("domain-name:value", "Domain-Name", true),
        "Hostname" => simple("hostname:value", "Hostname", false),
        "Url" => simple("url:value", "Url", false),
        "Email-Addr" => simple("email-addr:value", "Email-Addr", true),
        "StixFile" | "File" => {
            let mut hashes: Vec<(String, String)> = Vec::new();
            if let Some(h) = observable.get("hashes").and_then(Value::as_object) {
                for algo in ["SHA-256", "SHA-512", "SHA-1", "MD5"] {
                    if let Some(v) = h.get(algo).and_then(Value::as_str) {
                        hashes.push((algo.to_owned(), v.to_owned()));
                    }
                }
                if let Some(bad) = h
                    .keys()
                    .find(|k| !["SHA-256", "SHA-512", "SHA-1", "MD5"].contains(&k.as_str()))
                {
                    return Err(format!("observable.hashes: unsupported algorithm {bad:?}"));
                }
            }
            if hashes.is_empty() {
                let name = observable
                    .get("name")
                    .or(observable.get("value"))
                    .and_then(Value::as_str)
                    .ok_or("observable: a StixFile needs hashes or a name")?;
                let o = vec![ObservableValue {
                    kind: "StixFile".into(),
                    value: Some(name.to_owned()),
                    hashes: vec![],
                }];
                return Ok((
                    format!("[file:name = {}]", quote(name)),
                    "StixFile".into(),
                    o,
                ));
            }
            let parts: Vec<String> = hashes
                .iter()
                .map(|(a, v)| {
                    if a == "MD5" {
                        format!("file:hashes.MD5 = {}", quote(v))
                    } else {
                        format!("file:hashes.'{a}' = {}", quote(v))
                    }
                })
                .collect();
            let o = vec![ObservableValue {
                kind: "StixFile".into(),
                value: None,
                hashes,
            }];
            Ok((format!("[{}]", parts.join(" OR ")), "StixFile".into(), o))
        }
        other => Err(format!("observable.type: unsupported {other:?}")),
    }
}

/// The main observable type of a STIX pattern, from its first object path.
pub(crate) fn main_type_of(pattern: &str) -> &'static str {
    let p = pattern.trim_start_matches(['[', ' ', '(']);
    match p.split(':').next().unwrap_or_default() {
        "ipv4-addr" => "IPv4-Addr",
        "ipv6-addr" => "IPv6-Addr",
        "domain-name" => "Domain-Name",
        "hostname" => "Hostname",
        "url" => "Url",
        "email-addr" => "Email-Addr",
        "file" => "StixFile",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observables_become_opencti_patterns() {
        let (p, t, _) =
            pattern_for(&json!({"type": "Domain-Name", "value": "ExAmple.COM"})).unwrap();
        assert_eq!(
            (p.as_str(), t.as_str()),
            ("[domain-name:value = 'example.com']", "Domain-Name")
        );
        let (p, _, _) =
            pattern_for(&json!({"type": "StixFile", "hashes": {"MD5": "d", "SHA-256": "a"}}))
                .unwrap();
        assert_eq!(p, "[file:hashes.'SHA-256' = 'a' OR file:hashes.MD5 = 'd']");
        assert!(pattern_for(&json!({"type": "Mutex", "value": "x"})).is_err());
        assert_eq!(main_type_of("[ipv6-addr:value = '::1']"), "IPv6-Addr");
    }

    #[test]
    fn quoting_escapes_backslash_and_quote() {
        assert_eq!(quote("o'brien\\x"), "'o\\'brien\\\\x'");
    }

    #[test]
    fn every_shape_is_generated_with_expected_forms() {
        let mut rng = StdRng::seed_from_u64(1);
        let patterns: Vec<String> = (0..SHAPES).map(|k| shape(k, &mut rng).pattern).collect();
        assert!(
            patterns
                .iter()
                .any(|p| p.starts_with("[file:hashes.MD5 = '"))
        );
        assert!(
            patterns
                .iter()
                .any(|p| p.starts_with("[file:hashes.'MD5' = '"))
        );
        assert!(
            patterns
                .iter()
                .any(|p| p.contains(" OR file:hashes.'SHA-512' = "))
        );
        assert!(patterns.iter().any(|p| p.contains("\\'")));
        assert!(
            patterns
                .iter()
                .any(|p| p.starts_with("[ipv4-addr:value = '") && p.contains('/'))
        );
        assert!(patterns.iter().any(|p| p.starts_with("rule ")));
    }

    #[test]
    fn stix_has_the_opencti_extension_fields() {
        let refs = refs(1);
        let mut g = Gen::new(1, &refs);
        let now = Utc::now();
        let i = g.indicator(0, now, now);
        let v = i.to_value(&refs);
        assert_eq!(v["type"], "indicator");
        assert_eq!(
            v["extensions"][OCTI_EXT]["main_observable_type"],
            "IPv4-Addr"
        );
        assert_eq!(v["extensions"][OCTI_EXT]["id"], i.internal_id);
        assert_eq!(
            v["created_by_ref"],
            refs.identities[i.created_by.unwrap()]["id"]
        );
    }
}
