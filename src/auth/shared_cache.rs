//! The introspection cache replicas share, in Redis, so that the authorization server
//! sees one introspection call per token rather than one per replica. It sits behind
//! each replica's own cache: a local miss looks here before asking the endpoint, and
//! an answer from the endpoint is written here for the others.
//!
//! One key per token, `mcpgate:introspection:<hex SHA-256 of the token>` (never the
//! token), holding the members of the answer that are judged (see [`CLAIMS`]) rather
//! than a verdict: a reader judges them again with its own configuration, so the
//! principal it builds is the one it would have built from the endpoint's answer, and
//! a replica whose `issuers` or audiences differ cannot inherit another's verdict.
//!
//! A record is `v1:<mac>:<until>:<claims JSON>`. `<until>` is when the entry ends
//! (Unix milliseconds; the key's TTL ends it too), so a copy kept by a reader never
//! outlives the writer's `cache_ttl`. `<mac>` is an HMAC-SHA256, keyed by a key
//! derived from the introspection client secret, over the token's digest and the rest
//! of the record: someone who can write to Redis but does not hold that secret cannot
//! make up an active token, move a record to another token's key, or lengthen its
//! life. Anything that does not read back exactly (another format, a bad MAC, an
//! expired `<until>`) is a miss, never an answer.
//!
//! This cache is an optimisation, not a source of truth: when Redis fails or is slow
//! (no answer within [`TIMEOUT`]), the endpoint is asked directly and the failure is
//! counted (`mcpgate_token_cache_total{cache="introspection_shared",result="error"}`),
//! never turned into a 503.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use fred::prelude::{ClientLike, Expiration, KeysInterface, Value as RedisValue};
use serde_json::{Map, Value};

use crate::redis::SharedRedis;
use crate::telemetry::metrics::{TokenCache, metrics};

/// Namespace of the cache's keys (the sessions' are `mcpgate:session:`).
const KEY_PREFIX: &str = "mcpgate:introspection:";

/// First field of a record: a record of another format (a later mcpgate during a
/// rolling upgrade) is a miss.
const FORMAT: &str = "v1";

/// Longest wait for one Redis command. Redis answers in well under a millisecond on
/// a healthy network; beyond a few hundred milliseconds a cache lookup costs more than
/// it saves (the endpoint answers in tens of milliseconds), and it is paid twice on a
/// miss (read, then write). A Redis known to be down fails at once instead.
pub const TIMEOUT: Duration = Duration::from_millis(200);

/// Largest claims document written or read back: as large as an introspection
/// response mcpgate accepts.
const MAX_CLAIMS_BYTES: usize = 64 * 1024;

/// The members of an introspection answer that decide whether a token is accepted
/// and who it stands for: what [`super::introspection`] judges, and all a record keeps.
pub const CLAIMS: [&str; 8] = [
    "active",
    "exp",
    "iss",
    "aud",
    "scope",
    "client_id",
    "sub",
    "username",
];

/// A record's member holding a fractional `exp` as its IEEE 754 bits: serde_json (as
/// built here) may read a printed float back one unit in the last place off, and the
/// principal must come back exactly. Only [`CLAIMS`] are copied from an answer, so an
/// authorization server cannot send this member.
const EXP_BITS: &str = "mcpgate_exp_bits";

/// A record's member listing the extra claims its writer asked for (present or
/// not), so that a reader asking for more knows the record cannot answer it. Only
/// [`CLAIMS`] and the configured extras are copied from an answer, and neither ever
/// names this member.
const EXTRA: &str = "mcpgate_extra_claims";

/// Redis failures are logged at most this often; the metric counts every one.
const WARN_EVERY_SECS: u64 = 10;

/// The shared cache: the process's Redis connection and the key records are signed with.
pub struct SharedCache {
    redis: SharedRedis,
    mac_key: [u8; 32],
    /// Unix seconds of the last warning about a Redis failure.
    last_warning: AtomicU64,
}

impl SharedCache {
    /// Records are signed with a key derived from the introspection client's secret,
    /// endpoint and id: replicas configured alike share records; a replica with
    /// another secret or endpoint reads the others' as misses.
    pub fn new(redis: SharedRedis, endpoint: &str, client_id: &str, client_secret: &str) -> Self {
        let mac_key = hmac_sha256(
            client_secret.as_bytes(),
            &[
                b"mcpgate introspection cache v1\0",
                endpoint.as_bytes(),
                b"\0",
                client_id.as_bytes(),
            ],
        );
        Self {
            redis,
            mac_key,
            last_warning: AtomicU64::new(0),
        }
    }

    /// The claims another replica (or this one) stored for the token, with how long
    /// the entry has left; `None` on a miss, an unreadable record, or a Redis failure.
    pub async fn get(&self, digest: &[u8; 32]) -> Option<(Map<String, Value>, Duration)> {
        let options = self.redis.options(TIMEOUT);
        let client = self.redis.client().with_options(&options);
        let lookup = client.get::<RedisValue, _>(key(digest));
        let value = match tokio::time::timeout(TIMEOUT, lookup).await {
            Ok(Ok(value)) => value,
            // A key of another type: nothing mcpgate wrote, so a miss.
            Ok(Err(error)) if error.details().starts_with("WRONGTYPE") => RedisValue::Null,
            Ok(Err(error)) => {
                self.failed("lookup", &error.to_string());
                return None;
            }
            Err(_) => {
                self.failed("lookup", "no answer in time");
                return None;
            }
        };
        let stored = match &value {
            RedisValue::Null => None,
            RedisValue::String(text) => Some(text.as_bytes()),
            RedisValue::Bytes(bytes) => Some(bytes.as_ref()),
            _ => Some(&[][..]),
        };
        let found = stored.and_then(|stored| {
            let decoded = decode(&self.mac_key, digest, stored, now_ms());
            if decoded.is_none() {
                tracing::warn!(
                    "introspection cache: a record in Redis did not read back (another \
                     format, another client secret, or not written by mcpgate); treated \
                     as a miss"
                );
            }
            decoded
        });
        metrics().token_cache(TokenCache::IntrospectionShared, found.is_some());
        found
    }

    /// Stores an answer's claims for `ttl` (nothing for a zero `ttl`). A failure is
    /// counted and logged, and changes nothing else.
    pub async fn put(&self, digest: &[u8; 32], claims: &Map<String, Value>, ttl: Duration) {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 {
            return;
        }
        let Some(record) = encode(
            &self.mac_key,
            digest,
            claims,
            now_ms().saturating_add(ttl_ms),
        ) else {
            return;
        };
        let options = self.redis.options(TIMEOUT);
        let px = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
        let client = self.redis.client().with_options(&options);
        let write =
            client.set::<(), _, _>(key(digest), record, Some(Expiration::PX(px)), None, false);
        match tokio::time::timeout(TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => self.failed("write", &error.to_string()),
            Err(_) => self.failed("write", "no answer in time"),
        }
    }

    fn failed(&self, what: &str, cause: &str) {
        metrics().token_cache_error(TokenCache::IntrospectionShared);
        let now = now_ms() / 1000;
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_SECS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "introspection cache: Redis {what} failed ({cause}); asking the introspection \
                 endpoint directly (further failures are counted, not logged, for {WARN_EVERY_SECS}s)"
            );
        }
    }
}

/// The members of an answer a record keeps: those judged, as the endpoint sent them,
/// plus `extra` (the claims the writer's `claim_scopes` read, so that a reader with the
/// same mappings grants the same scopes). An answer that is not active keeps only
/// `"active": false`: nothing else about it matters.
pub fn claims_of<'a>(
    answer: &Map<String, Value>,
    extra: impl IntoIterator<Item = &'a str>,
) -> Map<String, Value> {
    if answer.get("active") != Some(&Value::Bool(true)) {
        return Map::from_iter([("active".to_owned(), Value::Bool(false))]);
    }
    let mut kept: Map<String, Value> = CLAIMS
        .iter()
        .filter_map(|&name| Some((name.to_owned(), answer.get(name)?.clone())))
        .collect();
    let mut asked: Vec<Value> = Vec::new();
    for name in extra {
        // The record's own members are never copied from an answer.
        if name == EXP_BITS || name == EXTRA || CLAIMS.contains(&name) {
            continue;
        }
        if !asked.iter().any(|known| known == name) {
            asked.push(Value::String(name.to_owned()));
        }
        if let Some(value) = answer.get(name) {
            kept.insert(name.to_owned(), value.clone());
        }
    }
    if !asked.is_empty() {
        kept.insert(EXTRA.to_owned(), Value::Array(asked));
    }
    kept
}

/// Whether a record kept every claim in `extra` that the answer had: an active
/// record written by a replica that did not ask for one of them cannot say whether
/// the answer carried it, so it is read as a miss.
pub fn covers<'a>(record: &Map<String, Value>, extra: impl IntoIterator<Item = &'a str>) -> bool {
    if record.get("active") != Some(&Value::Bool(true)) {
        return true;
    }
    let asked = record.get(EXTRA).and_then(Value::as_array);
    extra.into_iter().all(|name| {
        CLAIMS.contains(&name)
            || name == EXP_BITS
            || name == EXTRA
            || asked.is_some_and(|asked| asked.iter().any(|known| known == name))
    })
}

/// What a reader gets back from a record written now: for tests of the whole path.
#[cfg(test)]
pub(super) fn through_a_record(claims: &Map<String, Value>) -> Option<Map<String, Value>> {
    let (digest, key) = ([1; 32], [2; 32]);
    let record = encode(&key, &digest, claims, now_ms() + 60_000)?;
    decode(&key, &digest, record.as_bytes(), now_ms()).map(|(claims, _)| claims)
}

fn key(digest: &[u8; 32]) -> String {
    format!("{KEY_PREFIX}{}", hex::encode(digest))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| u64::try_from(now.as_millis()).unwrap_or(u64::MAX))
}

/// `v1:<hex mac>:<until ms>:<claims JSON>`; `None` when the claims are too large to share.
fn encode(
    mac_key: &[u8; 32],
    digest: &[u8; 32],
    claims: &Map<String, Value>,
    until_ms: u64,
) -> Option<String> {
    let json = match claims.get("exp") {
        Some(Value::Number(exp)) if exp.is_f64() => {
            let mut claims = claims.clone();
            let bits = exp.as_f64()?.to_bits();
            claims.insert(EXP_BITS.to_owned(), Value::String(format!("{bits:016x}")));
            serde_json::to_string(&claims).ok()?
        }
        _ => serde_json::to_string(claims).ok()?,
    };
    if json.len() > MAX_CLAIMS_BYTES {
        return None;
    }
    let signed = format!("{until_ms}:{json}");
    let mac = mac(mac_key, digest, &signed);
    Some(format!("{FORMAT}:{}:{signed}", hex::encode(mac)))
}

/// The inverse of [`encode`] for the same token: the claims and the time the entry
/// has left; `None` for anything else, including a record that has ended.
fn decode(
    mac_key: &[u8; 32],
    digest: &[u8; 32],
    stored: &[u8],
    now_ms: u64,
) -> Option<(Map<String, Value>, Duration)> {
    if stored.len() > MAX_CLAIMS_BYTES + 128 {
        return None;
    }
    let text = std::str::from_utf8(stored).ok()?;
    let rest = text.strip_prefix(FORMAT)?.strip_prefix(':')?;
    let (mac_hex, signed) = rest.split_once(':')?;
    let claimed: [u8; 32] = hex::decode(mac_hex).ok()?.try_into().ok()?;
    if !same(&claimed, &mac(mac_key, digest, signed)) {
        return None;
    }
    let (until, json) = signed.split_once(':')?;
    if until.is_empty() || !until.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let left = until.parse::<u64>().ok()?.checked_sub(now_ms)?;
    if left == 0 {
        return None;
    }
    let Value::Object(mut claims) = crate::json::from_slice(json.as_bytes()).ok()? else {
        return None;
    };
    if let Some(bits) = claims.remove(EXP_BITS) {
        let bits = bits.as_str().filter(|bits| bits.len() == 16)?;
        let exp = f64::from_bits(u64::from_str_radix(bits, 16).ok()?);
        claims.insert(
            "exp".to_owned(),
            Value::Number(serde_json::Number::from_f64(exp)?),
        );
    }
    Some((claims, Duration::from_millis(left)))
}

/// The record's MAC: over the format, the token's digest (a record is good for its
/// own token only) and the signed part.
fn mac(mac_key: &[u8; 32], digest: &[u8; 32], signed: &str) -> [u8; 32] {
    hmac_sha256(
        mac_key,
        &[FORMAT.as_bytes(), b"\0", digest, signed.as_bytes()],
    )
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`, by aws-lc-rs (the crypto
/// library the JWT verification already uses).
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.sign().as_ref());
    out
}

/// Constant-time equality: how long a comparison takes says nothing about the MAC.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: [u8; 32] = [7; 32];
    const NOW: u64 = 1_800_000_000_000;

    fn digest(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn active() -> Map<String, Value> {
        object(json!({
            "active": true, "iss": "https://issuer.test", "sub": "alice", "client_id": "c:1",
            "scope": "a b:c", "aud": ["https://mcp.example/mcp", "x"], "exp": 1_800_000_300,
            "username": "Alice Ü",
        }))
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1, 2 and 6 (a key longer than the block).
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, data, expected) in cases {
            assert_eq!(hex::encode(hmac_sha256(key, &[data])), expected);
            let (a, b) = data.split_at(3);
            assert_eq!(hex::encode(hmac_sha256(key, &[a, b])), expected);
        }
    }

    #[test]
    fn records_round_trip() {
        let token = digest("opaque-1");
        for claims in [
            active(),
            claims_of(&object(json!({"active": false})), []),
            object(json!({"active": true, "exp": 1.8e9, "scope": ""})),
        ] {
            let record = encode(&KEY, &token, &claims, NOW + 1500).unwrap();
            assert!(record.starts_with("v1:"), "{record}");
            let (back, left) = decode(&KEY, &token, record.as_bytes(), NOW).unwrap();
            assert_eq!(back, claims);
            assert_eq!(left, Duration::from_millis(1500));
        }
    }

    #[test]
    fn a_fractional_exp_comes_back_bit_for_bit() {
        let token = digest("t");
        let mut exp = 1_700_000_000.0_f64;
        for step in 0..2000 {
            exp += 0.123_456_789 * f64::from(step % 7 + 1);
            let claims = object(json!({"active": true, "exp": exp}));
            let record = encode(&KEY, &token, &claims, NOW + 10).unwrap();
            let (back, _) = decode(&KEY, &token, record.as_bytes(), NOW).unwrap();
            assert_eq!(back["exp"].as_f64().map(f64::to_bits), Some(exp.to_bits()));
            assert_eq!(back, claims);
        }
        // Integers stay as they are, with no extra member.
        let claims = object(json!({"active": true, "exp": 1_800_000_000u64}));
        let record = encode(&KEY, &token, &claims, NOW + 10).unwrap();
        assert!(!record.contains(EXP_BITS), "{record}");
        // A malformed bits member is not an answer.
        for bits in [
            json!("zz"),
            json!(1),
            json!("7ff8000000000000"),
            json!("00"),
        ] {
            let signed = format!(
                "{}:{}",
                NOW + 10,
                json!({"active": true, "exp": 1.5, EXP_BITS: bits})
            );
            let stored = format!("v1:{}:{signed}", hex::encode(mac(&KEY, &token, &signed)));
            assert!(
                decode(&KEY, &token, stored.as_bytes(), NOW).is_none(),
                "{stored}"
            );
        }
    }

    #[test]
    fn claims_read_by_mappings_are_kept_but_never_the_records_own_member() {
        let mut answer = active();
        answer.insert("realm_access".into(), json!({"roles": ["admin"]}));
        answer.insert(EXP_BITS.into(), json!("00"));
        answer.insert("ext".into(), json!(1));
        let kept = claims_of(&answer, ["realm_access", EXP_BITS, "missing", "sub"]);
        let mut expected = active();
        expected.insert("realm_access".into(), json!({"roles": ["admin"]}));
        expected.insert(EXTRA.into(), json!(["realm_access", "missing"]));
        assert_eq!(kept, expected);
    }

    /// A reader that reads a claim the writer did not ask for cannot tell "absent"
    /// from "not kept": the record is a miss for it (a rule on that claim would
    /// otherwise not apply), while an inactive record answers anyone.
    #[test]
    fn a_record_covers_only_the_claims_its_writer_asked_for() {
        let mut answer = active();
        answer.insert("groups".into(), json!(["staff"]));
        let written = claims_of(&answer, ["groups", "dept"]);
        assert!(covers(&written, ["groups", "dept", "sub", "scope"]));
        assert!(covers(&written, []));
        assert!(!covers(&written, ["groups", "tier"]));
        let plain = claims_of(&answer, []);
        assert!(covers(&plain, ["sub"]));
        assert!(!covers(&plain, ["groups"]));
        assert!(covers(
            &json!({"active": false}).as_object().unwrap().clone(),
            ["groups"]
        ));
    }

    #[test]
    fn only_judged_members_are_kept_and_inactive_answers_keep_nothing_else() {
        let mut answer = active();
        answer.insert("ext".into(), json!({"secret": "x"}));
        answer.insert("token_type".into(), json!("Bearer"));
        assert_eq!(claims_of(&answer, []), active());
        for inactive in [
            json!({"active": false, "sub": "alice"}),
            json!({"active": "true", "sub": "alice", "scope": "admin"}),
            json!({"sub": "alice"}),
        ] {
            assert_eq!(
                Value::Object(claims_of(&object(inactive), [])),
                json!({"active": false})
            );
        }
    }

    #[test]
    fn a_record_is_good_for_its_own_token_and_key_only() {
        let record = encode(&KEY, &digest("alice-token"), &active(), NOW + 1000).unwrap();
        assert!(decode(&KEY, &digest("mallory-token"), record.as_bytes(), NOW).is_none());
        assert!(decode(&[8; 32], &digest("alice-token"), record.as_bytes(), NOW).is_none());
        // Ended: a key that outlived its record (PERSIST) is still a miss.
        assert!(decode(&KEY, &digest("alice-token"), record.as_bytes(), NOW + 1000).is_none());
    }

    #[test]
    fn tampered_or_foreign_records_are_misses() {
        let token = digest("t");
        let record = encode(&KEY, &token, &active(), NOW + 1000).unwrap();
        let (head, signed) = record.split_at(3 + 64 + 1);
        let longer = signed.replacen(&(NOW + 1000).to_string(), &(NOW + 999_999).to_string(), 1);
        let escalated = signed.replace("a b:c", "admin");
        let unsigned = format!("v1:{}:{signed}", "0".repeat(64));
        let mut flipped = record.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        let bad: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"v1".to_vec(),
            b"v1:".to_vec(),
            b"garbage".to_vec(),
            br#"{"active":true}"#.to_vec(),
            format!("{head}{longer}").into_bytes(),
            format!("{head}{escalated}").into_bytes(),
            unsigned.into_bytes(),
            flipped,
            record.replacen("v1:", "v2:", 1).into_bytes(),
            record.replacen("v1:", "V1:", 1).into_bytes(),
            record.to_uppercase().into_bytes(),
            format!("{record} ").into_bytes(),
            record.as_bytes()[..record.len() - 1].to_vec(),
            vec![0xff; 80],
            vec![b'a'; MAX_CLAIMS_BYTES + 200],
        ];
        for stored in bad {
            assert!(
                decode(&KEY, &token, &stored, NOW).is_none(),
                "{:?}",
                String::from_utf8_lossy(&stored[..stored.len().min(120)])
            );
        }
    }

    #[test]
    fn a_signed_record_that_is_not_a_claims_object_is_a_miss() {
        let token = digest("t");
        for signed in [
            format!("{}:[1]", NOW + 10),
            format!("{}:{{\"a\":1,\"a\":2}}", NOW + 10),
            format!("+{}:{{}}", NOW + 10),
            ":{}".to_owned(),
            (NOW + 10).to_string(),
        ] {
            let stored = format!("v1:{}:{signed}", hex::encode(mac(&KEY, &token, &signed)));
            assert!(
                decode(&KEY, &token, stored.as_bytes(), NOW).is_none(),
                "{stored}"
            );
        }
    }

    #[test]
    fn keys_name_the_digest_never_the_token() {
        let key = key(&digest("opaque-1"));
        assert!(key.starts_with("mcpgate:introspection:"));
        assert_eq!(key.len(), "mcpgate:introspection:".len() + 64);
        assert!(!key.contains("opaque-1"));
    }

    #[test]
    fn oversized_claims_are_not_shared() {
        let mut claims = active();
        claims.insert("scope".into(), json!("s ".repeat(MAX_CLAIMS_BYTES)));
        assert!(encode(&KEY, &digest("t"), &claims, NOW + 1).is_none());
    }
}
