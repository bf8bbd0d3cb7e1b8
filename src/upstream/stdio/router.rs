//! Which HTTP stream each message from the child goes to.
//!
//! A stdio server has one output for everything, while a Streamable HTTP client
//! expects each answer on the stream of the POST that asked, and everything else on
//! a POST stream that is still open or on its standalone GET stream. The router
//! keeps, per session, the client's pending request ids and the streams waiting on
//! them ("exchanges", one per POST), and decides:
//!
//! - a response goes to the exchange that sent its id (never anywhere else);
//! - `notifications/progress` goes to the exchange whose request carried its token;
//! - a session-wide notification (`…/list_changed`, `resources/updated`) goes to the
//!   GET stream when one is open, else to the oldest open POST stream;
//! - anything else (logging, server requests such as sampling or elicitation) goes
//!   to the oldest open POST stream, else to the GET stream. The child's stdout says
//!   nothing about which request caused a message; the oldest one is the likeliest,
//!   as short requests come and go while a long one does the work that talks back.
//!   Each message goes to exactly one stream: a server request seen twice would be
//!   answered twice.
//!
//! Nothing here awaits: the caller sends on the returned channel after unlocking.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;

use super::message::{IdKey, Outbound};

/// What an exchange or the GET stream receives.
#[derive(Debug)]
pub(super) enum Event {
    /// A message from the child, as compact JSON; `answers` names the request it
    /// answers, if it is a response.
    Message { json: Bytes, answers: Option<IdKey> },
    /// The client cancelled this request: no answer is coming and none is owed.
    Cancelled(IdKey),
}

/// Where a message from the child goes.
#[derive(Debug)]
pub(super) enum Destination {
    Send(mpsc::Sender<Event>, Option<IdKey>),
    /// A server request that no open stream can carry: the child gets an error
    /// answer at once instead of waiting for one that can never come.
    Reject(Value),
    /// Nobody is listening (a late answer to a request whose client went away, a
    /// notification with no stream open): dropped, as an HTTP server would.
    Drop(&'static str),
}

/// Why a POST's requests cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OpenError {
    /// This id is already pending in the session.
    Duplicate(Value),
    TooMany(usize),
    Ended,
}

/// One registered POST: its requests and the channel its response stream reads.
struct Exchange {
    tx: mpsc::Sender<Event>,
    /// The POST answers with SSE: it can carry messages other than its responses.
    streaming: bool,
    /// Requests still unanswered.
    remaining: usize,
}

struct Pending {
    exchange: u64,
    token: Option<IdKey>,
}

pub(super) struct Router {
    ended: bool,
    pending: HashMap<IdKey, Pending>,
    /// Progress token → exchange of the request that carried it.
    progress: HashMap<IdKey, u64>,
    /// Keyed by arrival order, so the first entry is the oldest.
    exchanges: BTreeMap<u64, Exchange>,
    get: Option<(u64, mpsc::Sender<Event>)>,
    next: u64,
    max_pending: usize,
}

/// Notifications about the session as a whole rather than about a request.
fn is_session_wide(method: &str) -> bool {
    matches!(
        method,
        "notifications/tools/list_changed"
            | "notifications/prompts/list_changed"
            | "notifications/resources/list_changed"
            | "notifications/resources/updated"
    )
}

impl Router {
    pub(super) fn new(max_pending: usize) -> Self {
        Self {
            ended: false,
            pending: HashMap::new(),
            progress: HashMap::new(),
            exchanges: BTreeMap::new(),
            get: None,
            next: 0,
            max_pending,
        }
    }

    /// Registers a POST's requests (id and progress token each) before they are
    /// written, so an answer cannot overtake the registration. All or nothing: a
    /// refused batch leaves nothing behind.
    pub(super) fn open(
        &mut self,
        requests: &[(&Value, &IdKey, Option<&IdKey>)],
        streaming: bool,
        tx: mpsc::Sender<Event>,
    ) -> Result<u64, OpenError> {
        if self.ended {
            return Err(OpenError::Ended);
        }
        for (index, (id, key, _)) in requests.iter().enumerate() {
            let repeated = requests
                .iter()
                .take(index)
                .any(|(_, other, _)| other == key);
            if repeated || self.pending.contains_key(*key) {
                return Err(OpenError::Duplicate((*id).clone()));
            }
        }
        if self.pending.len() + requests.len() > self.max_pending {
            return Err(OpenError::TooMany(self.max_pending));
        }
        let exchange = self.next;
        self.next += 1;
        for (_, key, token) in requests {
            let token = token.filter(|token| !self.progress.contains_key(*token));
            if let Some(token) = token {
                self.progress.insert(token.clone(), exchange);
            }
            self.pending.insert(
                (*key).clone(),
                Pending {
                    exchange,
                    token: token.cloned(),
                },
            );
        }
        self.exchanges.insert(
            exchange,
            Exchange {
                tx,
                streaming,
                remaining: requests.len(),
            },
        );
        Ok(exchange)
    }

    /// The exchange's stream is finished or gone: its unanswered ids are forgotten
    /// (a late answer is then dropped). Idempotent.
    pub(super) fn close(&mut self, exchange: u64) {
        self.exchanges.remove(&exchange);
        let ids: Vec<IdKey> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.exchange == exchange)
            .map(|(key, _)| key.clone())
            .collect();
        for key in ids {
            self.forget(&key);
        }
    }

    fn forget(&mut self, key: &IdKey) -> Option<u64> {
        let pending = self.pending.remove(key)?;
        if let Some(token) = pending.token {
            self.progress.remove(&token);
        }
        let exchange = pending.exchange;
        let finished = match self.exchanges.get_mut(&exchange) {
            Some(slot) => {
                slot.remaining = slot.remaining.saturating_sub(1);
                slot.remaining == 0
            }
            None => false,
        };
        if finished {
            // Its stream ends after this answer: nothing else may be routed to it.
            self.exchanges.remove(&exchange);
        }
        Some(exchange)
    }

    /// The client's `notifications/cancelled` for a pending request: its stream
    /// stops waiting for it.
    pub(super) fn cancel(&mut self, key: &IdKey) -> Option<mpsc::Sender<Event>> {
        let exchange = self.pending.get(key)?.exchange;
        let tx = self.exchanges.get(&exchange).map(|slot| slot.tx.clone());
        self.forget(key);
        tx
    }

    pub(super) fn route(&mut self, message: &Outbound) -> Destination {
        match message {
            Outbound::Response(key) => {
                let Some(exchange) = self.pending.get(key).map(|pending| pending.exchange) else {
                    return Destination::Drop("an answer to no pending request");
                };
                let tx = self.exchanges.get(&exchange).map(|slot| slot.tx.clone());
                self.forget(key);
                match tx {
                    Some(tx) => Destination::Send(tx, Some(key.clone())),
                    None => Destination::Drop("an answer to a request whose stream is gone"),
                }
            }
            Outbound::Notification {
                method,
                progress_token,
            } => {
                let by_token = progress_token
                    .as_ref()
                    .and_then(|token| self.streaming_exchange(token));
                let target = by_token.or_else(|| {
                    if is_session_wide(method) {
                        self.get_stream().or_else(|| self.oldest_stream())
                    } else {
                        self.oldest_stream().or_else(|| self.get_stream())
                    }
                });
                match target {
                    Some(tx) => Destination::Send(tx, None),
                    None => Destination::Drop("a notification with no stream open"),
                }
            }
            Outbound::Request { id, .. } => {
                match self.oldest_stream().or_else(|| self.get_stream()) {
                    Some(tx) => Destination::Send(tx, None),
                    None => Destination::Reject(id.clone()),
                }
            }
            Outbound::Invalid => Destination::Drop("not a JSON-RPC message"),
        }
    }

    fn streaming_exchange(&self, token: &IdKey) -> Option<mpsc::Sender<Event>> {
        let exchange = self.progress.get(token)?;
        self.exchanges
            .get(exchange)
            .filter(|slot| slot.streaming && !slot.tx.is_closed())
            .map(|slot| slot.tx.clone())
    }

    fn oldest_stream(&self) -> Option<mpsc::Sender<Event>> {
        self.exchanges
            .values()
            .find(|slot| slot.streaming && !slot.tx.is_closed())
            .map(|slot| slot.tx.clone())
    }

    fn get_stream(&self) -> Option<mpsc::Sender<Event>> {
        self.get
            .as_ref()
            .filter(|(_, tx)| !tx.is_closed())
            .map(|(_, tx)| tx.clone())
    }

    /// Registers the session's standalone GET stream. `None` when one is open
    /// already (the caller answers 409, as the TypeScript SDK's server does): a second
    /// one would split the session's messages between two readers.
    pub(super) fn open_get(&mut self, tx: mpsc::Sender<Event>) -> Option<u64> {
        if self.ended || self.get_stream().is_some() {
            return None;
        }
        let token = self.next;
        self.next += 1;
        self.get = Some((token, tx));
        Some(token)
    }

    pub(super) fn close_get(&mut self, token: u64) {
        if self
            .get
            .as_ref()
            .is_some_and(|(current, _)| *current == token)
        {
            self.get = None;
        }
    }

    /// Nothing is waiting on the child: no request pending, no GET stream open.
    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.exchanges.is_empty() && self.get_stream().is_none()
    }

    /// No new requests from now on.
    pub(super) fn refuse_new(&mut self) {
        self.ended = true;
    }

    /// The session is over: every stream's channel closes, and each stream answers
    /// its own unanswered requests with the session's end as an error.
    pub(super) fn end(&mut self) {
        self.ended = true;
        self.pending.clear();
        self.progress.clear();
        self.exchanges.clear();
        self.get = None;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(n: i64) -> IdKey {
        IdKey::Num(n.to_string())
    }

    fn notification(method: &str) -> Outbound {
        Outbound::Notification {
            method: method.into(),
            progress_token: None,
        }
    }

    fn open(
        router: &mut Router,
        ids: &[i64],
        token: Option<&str>,
        streaming: bool,
    ) -> Result<(u64, mpsc::Receiver<Event>), OpenError> {
        let (tx, rx) = mpsc::channel(8);
        let values: Vec<Value> = ids.iter().map(|id| json!(id)).collect();
        let keys: Vec<IdKey> = ids.iter().map(|id| key(*id)).collect();
        let token = token.map(|token| IdKey::Str(token.into()));
        let requests: Vec<_> = values
            .iter()
            .zip(&keys)
            .map(|(value, key)| (value, key, token.as_ref()))
            .collect();
        router
            .open(&requests, streaming, tx)
            .map(|exchange| (exchange, rx))
    }

    fn goes_to(destination: Destination, rx: &mpsc::Receiver<Event>) -> bool {
        match destination {
            Destination::Send(tx, _) => tx.same_channel_as(rx),
            _ => false,
        }
    }

    trait SameChannel {
        fn same_channel_as(&self, rx: &mpsc::Receiver<Event>) -> bool;
    }

    impl SameChannel for mpsc::Sender<Event> {
        /// A message sent here arrives there.
        fn same_channel_as(&self, rx: &mpsc::Receiver<Event>) -> bool {
            let before = rx.len();
            let sent = self
                .try_send(Event::Cancelled(IdKey::Str("probe".into())))
                .is_ok();
            sent && rx.len() == before + 1
        }
    }

    #[test]
    fn responses_go_to_the_exchange_that_sent_the_id() {
        let mut router = Router::new(16);
        let (_, a) = open(&mut router, &[1], None, true).unwrap();
        let (_, b) = open(&mut router, &[2], None, false).unwrap();
        assert!(goes_to(router.route(&Outbound::Response(key(2))), &b));
        assert!(goes_to(router.route(&Outbound::Response(key(1))), &a));
        // Answered once: a second answer has nowhere to go.
        assert!(matches!(
            router.route(&Outbound::Response(key(1))),
            Destination::Drop(_)
        ));
        assert!(router.is_idle());
    }

    #[test]
    fn a_pending_id_cannot_be_reused_and_a_batch_is_all_or_nothing() {
        let mut router = Router::new(16);
        let _a = open(&mut router, &[1], None, true).unwrap();
        assert_eq!(
            open(&mut router, &[1], None, true).unwrap_err(),
            OpenError::Duplicate(json!(1))
        );
        assert_eq!(
            open(&mut router, &[3, 1], None, true).unwrap_err(),
            OpenError::Duplicate(json!(1))
        );
        // Nothing of the refused batch was kept: 3 is free.
        assert!(open(&mut router, &[3], None, true).is_ok());
        assert_eq!(
            open(&mut router, &[4, 4], None, true).unwrap_err(),
            OpenError::Duplicate(json!(4))
        );
        // Once answered, an id may be used again.
        router.route(&Outbound::Response(key(1)));
        assert!(open(&mut router, &[1], None, true).is_ok());
    }

    #[test]
    fn pending_requests_are_bounded() {
        let mut router = Router::new(2);
        let _a = open(&mut router, &[1, 2], None, true).unwrap();
        assert_eq!(
            open(&mut router, &[3], None, true).unwrap_err(),
            OpenError::TooMany(2)
        );
    }

    #[test]
    fn progress_follows_its_token_and_other_messages_the_oldest_stream() {
        let mut router = Router::new(16);
        let (_, old) = open(&mut router, &[1], Some("t1"), true).unwrap();
        let (_, new) = open(&mut router, &[2], Some("t2"), true).unwrap();
        let progress = Outbound::Notification {
            method: "notifications/progress".into(),
            progress_token: Some(IdKey::Str("t2".into())),
        };
        assert!(goes_to(router.route(&progress), &new));
        assert!(goes_to(
            router.route(&notification("notifications/message")),
            &old
        ));
        let sampling = Outbound::Request {
            id: json!(0),
            method: "sampling/createMessage".into(),
        };
        assert!(goes_to(router.route(&sampling), &old));
        // The oldest finishes: the next-oldest takes over.
        router.route(&Outbound::Response(key(1)));
        assert!(goes_to(router.route(&sampling), &new));
    }

    #[test]
    fn json_exchanges_carry_only_their_answers() {
        let mut router = Router::new(16);
        let _json = open(&mut router, &[1], Some("t"), false).unwrap();
        assert!(matches!(
            router.route(&notification("notifications/message")),
            Destination::Drop(_)
        ));
        let sampling = Outbound::Request {
            id: json!("s1"),
            method: "sampling/createMessage".into(),
        };
        // Nobody can answer it: the child hears so at once.
        assert!(matches!(router.route(&sampling), Destination::Reject(id) if id == json!("s1")));
    }

    #[test]
    fn session_wide_notifications_prefer_the_get_stream() {
        let mut router = Router::new(16);
        let (_, post) = open(&mut router, &[1], None, true).unwrap();
        let changed = notification("notifications/tools/list_changed");
        assert!(goes_to(router.route(&changed), &post));
        let (tx, get) = mpsc::channel(8);
        let token = router.open_get(tx).unwrap();
        assert!(goes_to(router.route(&changed), &get));
        // Request-related messages still prefer the POST stream.
        assert!(goes_to(
            router.route(&notification("notifications/message")),
            &post
        ));
        router.route(&Outbound::Response(key(1)));
        assert!(goes_to(
            router.route(&notification("notifications/message")),
            &get
        ));
        assert!(!router.is_idle());
        router.close_get(token);
        assert!(router.is_idle());
    }

    #[test]
    fn one_get_stream_at_a_time_until_it_goes_away() {
        let mut router = Router::new(16);
        let (tx, first) = mpsc::channel(8);
        assert!(router.open_get(tx).is_some());
        let (tx, _second) = mpsc::channel(8);
        assert!(router.open_get(tx.clone()).is_none());
        // The first reader disconnected without the stream being closed yet.
        drop(first);
        assert!(router.open_get(tx).is_some());
    }

    #[test]
    fn a_cancelled_request_is_no_longer_pending() {
        let mut router = Router::new(16);
        let (_, rx) = open(&mut router, &[1, 2], None, true).unwrap();
        let tx = router.cancel(&key(1)).unwrap();
        assert!(tx.same_channel_as(&rx));
        assert!(router.cancel(&key(1)).is_none());
        assert!(matches!(
            router.route(&Outbound::Response(key(1))),
            Destination::Drop(_)
        ));
        assert!(goes_to(router.route(&Outbound::Response(key(2))), &rx));
        assert!(router.is_idle());
    }

    #[test]
    fn closing_an_exchange_forgets_its_ids_and_ending_refuses_new_ones() {
        let mut router = Router::new(16);
        let (exchange, _rx) = open(&mut router, &[1, 2], Some("t"), true).unwrap();
        router.close(exchange);
        assert!(router.is_idle());
        assert!(matches!(
            router.route(&Outbound::Response(key(1))),
            Destination::Drop(_)
        ));
        router.end();
        assert_eq!(
            open(&mut router, &[5], None, true).unwrap_err(),
            OpenError::Ended
        );
        let (tx, _get) = mpsc::channel(8);
        assert!(router.open_get(tx).is_none());
    }
}
