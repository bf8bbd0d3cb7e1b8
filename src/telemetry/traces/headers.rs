//! W3C trace context in and out of an `http::HeaderMap`.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};

const TRACESTATE: &str = "tracestate";

/// Reads `traceparent`/`tracestate` from the client's request.
pub(super) struct HeaderExtractor<'a> {
    headers: &'a HeaderMap,
    tracestate: Option<Cow<'a, str>>,
}

impl<'a> HeaderExtractor<'a> {
    pub(super) fn new(headers: &'a HeaderMap) -> Self {
        // Several `tracestate` headers are one list (W3C trace context §3.3.1.1); only
        // that case needs a joined copy.
        let mut values = headers
            .get_all(TRACESTATE)
            .iter()
            .filter_map(|value| value.to_str().ok());
        let tracestate = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(only), None) => Some(Cow::Borrowed(only)),
            (Some(first), Some(second)) => {
                let mut joined = format!("{first},{second}");
                for value in values {
                    joined.push(',');
                    joined.push_str(value);
                }
                Some(Cow::Owned(joined))
            }
        };
        Self {
            headers,
            tracestate,
        }
    }
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case(TRACESTATE) {
            return self.tracestate.as_deref();
        }
        self.headers.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes `traceparent`/`tracestate` on the upstream request, replacing the client's.
pub(super) struct HeaderInjector<'a>(pub(super) &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else {
            return;
        };
        // An empty `tracestate` means none: send no header rather than an empty one,
        // and none of the client's either.
        match HeaderValue::from_str(&value) {
            Ok(value) if !value.is_empty() => {
                self.0.insert(name, value);
            }
            _ => {
                self.0.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_tracestate_headers_are_one_list() {
        let mut headers = HeaderMap::new();
        headers.append(TRACESTATE, HeaderValue::from_static("a=1"));
        headers.append(TRACESTATE, HeaderValue::from_static("b=2"));
        headers.append(TRACESTATE, HeaderValue::from_static("c=3"));
        let extractor = HeaderExtractor::new(&headers);
        assert_eq!(extractor.get("tracestate"), Some("a=1,b=2,c=3"));
    }

    #[test]
    fn empty_values_remove_the_header() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACESTATE, HeaderValue::from_static("client=1"));
        HeaderInjector(&mut headers).set("tracestate", String::new());
        assert!(headers.get(TRACESTATE).is_none());
        HeaderInjector(&mut headers).set("traceparent", "00-x".to_owned());
        assert_eq!(headers.get("traceparent").unwrap(), "00-x");
    }
}
