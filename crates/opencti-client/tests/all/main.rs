//! Integration tests of `opencti-client`: GraphQL against wiremock, the live stream against a
//! small axum SSE server running inside the test.

mod deployments;
mod graphql;
mod live_stream;
mod support;
mod tls;
