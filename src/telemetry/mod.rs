//! What operators watch: Prometheus metrics and OpenTelemetry traces.
//!
//! A leaf: the facts it reports and the label values it accepts are given by the
//! modules that own them (`RequestFacts` by the audit record, label sets by the
//! server), so nothing here imports the request path.

mod facts;
pub mod metrics;
pub mod traces;

pub use facts::RequestFacts;
