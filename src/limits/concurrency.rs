//! Calls in flight per principal (`limits.concurrency.per_principal`): a POST takes
//! a permit before it is forwarded and gives it back when its answer has been sent
//! whole, or dropped (the client left). A standing GET stream holds none: it is
//! not a call, and would hold its permit for hours. Over the limit the request is
//! refused at once; queueing would hold a connection and memory for a client that
//! is already using its share.
//!
//! Counted per process, outside the gateway, so a reload neither forgets the calls
//! running nor lets a new limit be exceeded by them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// The calls in flight, by principal subject. A subject with none has no entry, so
/// the map never holds more than the calls running.
#[derive(Debug, Default)]
pub struct InFlight {
    counts: Mutex<HashMap<String, u32>>,
}

/// One call's place; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    owner: Arc<InFlight>,
    subject: String,
}

impl InFlight {
    /// A permit for `subject` if it has fewer than `limit` calls in flight.
    pub fn try_acquire(self: &Arc<Self>, subject: &str, limit: u32) -> Option<Permit> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(subject.to_owned()).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                counts.remove(subject);
            }
            return None;
        }
        *count += 1;
        Some(Permit {
            owner: Arc::clone(self),
            subject: subject.to_owned(),
        })
    }

    /// How many calls `subject` has in flight.
    pub fn count(&self, subject: &str) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(subject).copied().unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self
            .owner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.subject) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.subject);
            }
        }
    }
}

/// A response body that holds a permit until it has been sent whole or dropped.
pub struct Held {
    body: Body,
    permit: Option<Permit>,
}

impl Held {
    /// `body`, holding `permit` while it is sent.
    pub fn wrap(body: Body, permit: Permit) -> Body {
        Body::new(Self {
            body,
            permit: Some(permit),
        })
    }
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            // Sent whole (or failed): the call is over even if the body lingers.
            self.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn permits_are_counted_per_subject_and_given_back() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.try_acquire("alice", 2).unwrap();
        let second = in_flight.try_acquire("alice", 2).unwrap();
        assert!(in_flight.try_acquire("alice", 2).is_none());
        // Another principal is not touched.
        let bob = in_flight.try_acquire("bob", 2).unwrap();
        drop(first);
        let third = in_flight.try_acquire("alice", 2).unwrap();
        drop((second, third, bob));
        assert_eq!(in_flight.count("alice"), 0);
        assert!(in_flight.counts.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_body_holds_its_permit_until_sent_or_dropped() {
        let in_flight = Arc::new(InFlight::default());
        let body = Held::wrap(
            Body::from("answer"),
            in_flight.try_acquire("alice", 1).unwrap(),
        );
        assert_eq!(in_flight.count("alice"), 1);
        let mut body = body;
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "answer");
        assert!(body.frame().await.is_none());
        assert_eq!(in_flight.count("alice"), 0);
        drop(body);
        let dropped = Held::wrap(Body::from("x"), in_flight.try_acquire("alice", 1).unwrap());
        assert!(in_flight.try_acquire("alice", 1).is_none());
        drop(dropped);
        assert_eq!(in_flight.count("alice"), 0);
    }
}
