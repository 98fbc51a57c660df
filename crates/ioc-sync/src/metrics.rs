//! Metric names. The engine records through the `metrics` facade; the binary installs the Prometheus
//! exporter. The first two are the Python connector's, with the same names and labels.

/// Counter `processed_messages_total{name, action}`: stream data events by SSE event name (Python connector).
pub const PROCESSED_MESSAGES: &str = "processed_messages_total";
/// Gauge `current_state{name}`: epoch milliseconds of the last processed event id (Python connector).
pub const CURRENT_STATE: &str = "current_state";
/// Counter `ioc_sync_ioc_writes_total{name, operation}`: IOCs written, by `create`/`update`/`soft_delete`/`delete`.
pub const IOC_WRITES: &str = "ioc_sync_ioc_writes_total";
/// Counter `ioc_sync_skipped_total{name, reason}`: comparisons or events not written, by reason.
pub const SKIPPED: &str = "ioc_sync_skipped_total";
/// Counter `ioc_sync_dead_letters_total{name, operation}`: permanently failed IOC writes.
pub const DEAD_LETTERS: &str = "ioc_sync_dead_letters_total";
/// Counter `ioc_sync_falcon_requests_total{name, endpoint, status}`: Falcon requests by outcome.
pub const FALCON_REQUESTS: &str = "ioc_sync_falcon_requests_total";
/// Gauge `ioc_sync_rate_limit_remaining{name}`: last `X-RateLimit-Remaining` seen.
pub const RATE_LIMIT_REMAINING: &str = "ioc_sync_rate_limit_remaining";
/// Gauge `ioc_sync_stream_lag_seconds{name}`: now minus the time of the last written event id.
pub const STREAM_LAG: &str = "ioc_sync_stream_lag_seconds";
/// Counter `ioc_sync_batches_total{name}`: batches written.
pub const BATCHES: &str = "ioc_sync_batches_total";
/// Counter `ioc_sync_retries_total{name}`: batch retries after a transient failure.
pub const RETRIES: &str = "ioc_sync_retries_total";
/// Counter `ioc_sync_malformed_events_total{name}`: events that could not be decoded.
pub const MALFORMED_EVENTS: &str = "ioc_sync_malformed_events_total";

/// Every metric with its help text (for `describe_*` and docs).
pub const ALL: &[(&str, &str)] = &[
    (
        PROCESSED_MESSAGES,
        "Stream data events processed, by SSE event name",
    ),
    (
        CURRENT_STATE,
        "Epoch milliseconds of the last processed stream event id",
    ),
    (IOC_WRITES, "IOCs written to Falcon, by operation"),
    (
        SKIPPED,
        "Indicator comparisons or events not written to Falcon, by reason",
    ),
    (
        DEAD_LETTERS,
        "IOC writes that failed permanently and went to the dead-letter file",
    ),
    (
        FALCON_REQUESTS,
        "Falcon API requests made by the engine, by endpoint and status",
    ),
    (
        RATE_LIMIT_REMAINING,
        "Last X-RateLimit-Remaining seen from Falcon",
    ),
    (
        STREAM_LAG,
        "Seconds between now and the last written stream event",
    ),
    (BATCHES, "Batches written"),
    (RETRIES, "Batch retries after transient failures"),
    (MALFORMED_EVENTS, "Stream events that could not be decoded"),
];

/// Registers help texts with the installed recorder.
pub fn describe() {
    for (name, help) in ALL {
        match *name {
            CURRENT_STATE | RATE_LIMIT_REMAINING | STREAM_LAG => {
                metrics::describe_gauge!(*name, *help)
            }
            _ => metrics::describe_counter!(*name, *help),
        }
    }
}
