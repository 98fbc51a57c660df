//! Logs in pycti's JSON format: one object per line on stderr with the keys `timestamp`, `level`,
//! `name`, `message`, then `exc_info` (ERROR only) and `attributes` (the event's fields).

use std::fmt::Write as _;
use std::io::Write as _;

use ioc_sync::config::Config;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the global subscriber for the connector (JSON unless `OPENCTI_JSON_LOGGING=false`).
pub fn init(config: &Config) {
    let filter = EnvFilter::new(config.connector.log_level.as_filter());
    if config.opencti.json_logging {
        let _ = tracing_subscriber::registry()
            .with(
                PyctiJson {
                    name: config.connector.name.clone(),
                }
                .with_filter(filter),
            )
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// The pycti-format layer.
pub struct PyctiJson {
    /// Logger name for the connector's own events (`CONNECTOR_NAME`).
    pub name: String,
}

#[derive(Default)]
struct Fields {
    message: String,
    attributes: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.attributes
                .insert(field.name().to_string(), value.into());
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes
            .insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.attributes
            .insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes
            .insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes
            .insert(field.name().to_string(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.attributes
                .insert(field.name().to_string(), format!("{value:?}").into());
        }
    }
}

/// Formats one log line (no trailing newline).
pub fn format_line(
    name: &str,
    target: &str,
    level: &Level,
    message: &str,
    attributes: &serde_json::Map<String, serde_json::Value>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let level = match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    };
    let logger = if target.starts_with("opencti_client") || target.starts_with("falcon_sdk") {
        "api"
    } else {
        name
    };
    let mut line = String::with_capacity(128);
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let _ = write!(
        line,
        "{{\"timestamp\": {}, \"level\": {}, \"name\": {}, \"message\": {}",
        q(&now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        q(level),
        q(logger),
        q(message)
    );
    if level == "ERROR" {
        let exc = attributes
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or("NoneType: None");
        let _ = write!(line, ", \"exc_info\": {}", q(exc));
    }
    if !attributes.is_empty() {
        let _ = write!(
            line,
            ", \"attributes\": {}",
            serde_json::Value::Object(attributes.clone())
        );
    }
    line.push('}');
    line
}

impl<S: Subscriber> Layer<S> for PyctiJson {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        let mut line = format_line(
            &self.name,
            meta.target(),
            meta.level(),
            &f.message,
            &f.attributes,
            chrono::Utc::now(),
        );
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pycti_key_order_and_error_exc_info() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-04-10T08:00:00.123456Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut attrs = serde_json::Map::new();
        let line = format_line(
            "CrowdstrikeEndpointSecurity",
            "ioc_sync::engine",
            &Level::INFO,
            "Connector registered with ID",
            &attrs,
            now,
        );
        assert_eq!(
            line,
            r#"{"timestamp": "2024-04-10T08:00:00.123456Z", "level": "INFO", "name": "CrowdstrikeEndpointSecurity", "message": "Connector registered with ID"}"#
        );
        attrs.insert("reason".into(), "boom".into());
        let line = format_line(
            "X",
            "opencti_client::stream",
            &Level::ERROR,
            "Error in ListenStream loop, exit.",
            &attrs,
            now,
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "ERROR");
        assert_eq!(v["name"], "api");
        assert_eq!(v["exc_info"], "boom");
        assert_eq!(v["attributes"]["reason"], "boom");
        let line = format_line(
            "X",
            "ioc_sync",
            &Level::WARN,
            "w",
            &serde_json::Map::new(),
            now,
        );
        assert!(line.contains(r#""level": "WARNING""#));
    }
}
