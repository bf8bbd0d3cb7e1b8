//! `--curves N`: how mcpgate's cost grows with what it is configured with and what it
//! carries (issue #21). Each curve is one request measured at several sizes, counted
//! by callgrind as `--callgrind` counts a scenario, so the points compare exactly on a
//! shared machine: a cached-token `tools/call` with 10 to 10,000 tools upstream, with
//! 10 to 10,000 `scopes.tools` rules, with 1 to 1,000 `rules:` entries about
//! principals and with 1 to 1,000 `routes:` (issue #22), and a filtered `tools/list`
//! per tool of the list. A curve is flat when its costliest point costs at most 10 %
//! more than its cheapest.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::gateway::{self, AUDIENCE, Auth, Gateway, ISSUER};
use crate::keys::{self, Alg, Audience};
use crate::load::{Credential, Target};
use crate::profile::{self, WARMUP_REQUESTS};
use crate::scenario::{self, Bench, Scenario};
use crate::upstream::{self, MCP_PATH};

/// A curve is flat when its costliest point is at most this much above its cheapest.
const FLAT: f64 = 1.10;

/// Requests of a list point are fewer as the list grows (a 10,000-tool list costs
/// tens of millions of instructions under callgrind): `requests × LIST_SCALE / tools`,
/// at least [`LIST_MIN_REQUESTS`].
const LIST_SCALE: usize = 100;
const LIST_MIN_REQUESTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// `tools/call` with more and more tools upstream.
    CallTools,
    /// `tools/call` with more and more `scopes.tools` rules.
    CallRules,
    /// Filtered `tools/list`, per tool, with more and more tools.
    ListTools,
    /// `tools/call` with more and more `rules:` entries keyed by principal.
    PrincipalRules,
    /// `tools/call` on one route with more and more `routes:` entries.
    Routes,
}

pub const ALL: [Curve; 5] = [
    Curve::CallTools,
    Curve::CallRules,
    Curve::ListTools,
    Curve::PrincipalRules,
    Curve::Routes,
];

impl Curve {
    pub fn name(self) -> &'static str {
        match self {
            Self::CallTools => "curve-call-tools",
            Self::CallRules => "curve-call-rules",
            Self::ListTools => "curve-list-tools",
            Self::PrincipalRules => "curve-principal-rules",
            Self::Routes => "curve-routes",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::CallTools => {
                "tools/call (HS256, cached) with 10 to 10,000 tools upstream: instructions per call"
            }
            Self::CallRules => {
                "tools/call (HS256, cached) with 10 to 10,000 scopes.tools rules: instructions per call"
            }
            Self::ListTools => {
                "filtered tools/list with 10 to 10,000 tools: instructions per tool above an empty list"
            }
            Self::PrincipalRules => {
                "tools/call (HS256, cached) with 1 to 1,000 rules: entries by subject, client or claim"
            }
            Self::Routes => {
                "tools/call (HS256, cached) on the first and the last of 1 to 1,000 routes: entries"
            }
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        ALL.into_iter().find(|curve| curve.name() == name)
    }

    /// The sizes measured, ascending.
    fn sizes(self) -> &'static [usize] {
        match self {
            Self::CallTools | Self::CallRules | Self::ListTools => &[10, 100, 1_000, 10_000],
            Self::PrincipalRules | Self::Routes => &[1, 10, 100, 1_000],
        }
    }

    /// What a size counts, as a column head.
    fn unit(self) -> &'static str {
        match self {
            Self::CallTools | Self::ListTools => "tools upstream",
            Self::CallRules => "scopes.tools rules",
            Self::PrincipalRules => "rules: entries",
            Self::Routes => "routes: entries",
        }
    }

    fn lists(self) -> bool {
        self == Self::ListTools
    }

    /// Tools in the upstream at `size`.
    fn tools(self, size: usize) -> usize {
        match self {
            Self::CallTools | Self::ListTools => size,
            Self::CallRules | Self::PrincipalRules | Self::Routes => 1_000,
        }
    }
}

/// One size of a curve, counted.
pub struct Point {
    pub size: usize,
    /// Routes only: which route (from 1) was called.
    pub route: Option<usize>,
    pub requests: usize,
    pub instructions: u64,
    pub top: Vec<String>,
}

impl Point {
    pub fn per_request(&self) -> f64 {
        self.instructions as f64 / self.requests.max(1) as f64
    }
}

/// A curve's points, and for lists the empty list they are measured against.
pub struct Counted {
    pub curve: Curve,
    pub points: Vec<Point>,
    /// Lists only: the same request with no tool at all.
    pub base: Option<Point>,
}

impl Counted {
    /// What the curve plots at `point`: instructions per request, or for a list,
    /// instructions per tool above the empty list.
    pub fn value(&self, point: &Point) -> f64 {
        match &self.base {
            Some(base) if point.size > 0 => {
                (point.per_request() - base.per_request()) / point.size as f64
            }
            _ => point.per_request(),
        }
    }

    /// The largest size's value over the smallest's, and the costliest point's over
    /// the cheapest's.
    pub fn ratios(&self) -> Option<(f64, f64)> {
        let values: Vec<f64> = self.points.iter().map(|point| self.value(point)).collect();
        let first = *values.first()?;
        let last = *values.last()?;
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        let min = values.iter().copied().fold(f64::MAX, f64::min);
        (first > 0.0 && min > 0.0).then(|| (last / first, max / min))
    }

    pub fn flat(&self) -> bool {
        self.ratios().is_some_and(|(_, spread)| spread <= FLAT)
    }
}

/// Counts every point of `curve`, `requests` requests each (fewer for long lists).
pub async fn count(bench: &Bench, curve: Curve, requests: usize) -> Result<Counted> {
    let base = if curve.lists() {
        Some(count_point(bench, curve, 0, 1, requests).await?)
    } else {
        None
    };
    let mut points = Vec::new();
    for &size in curve.sizes() {
        points.push(count_point(bench, curve, size, 1, requests).await?);
    }
    // Routes: the last route as well, so neither end of the list costs more.
    if let (Curve::Routes, Some(&size)) = (curve, curve.sizes().last())
        && size > 1
    {
        points.push(count_point(bench, curve, size, size, requests).await?);
    }
    Ok(Counted {
        curve,
        points,
        base,
    })
}

/// Counts one point; `route` is the route called (from 1) when the curve has routes.
async fn count_point(
    bench: &Bench,
    curve: Curve,
    size: usize,
    route: usize,
    requests: usize,
) -> Result<Point> {
    let tools = curve.tools(size);
    let (requests, warmup) = if curve.lists() && tools > 0 {
        let scaled = |count: usize| (count * LIST_SCALE / tools).clamp(LIST_MIN_REQUESTS, count);
        (scaled(requests), scaled(WARMUP_REQUESTS))
    } else {
        (requests, WARMUP_REQUESTS)
    };
    let routed = curve == Curve::Routes;
    let called = if routed {
        format!(", route {route}")
    } else {
        String::new()
    };
    eprintln!(
        "{} at {size} {}{called}: counting {requests} requests under callgrind…",
        curve.name(),
        curve.unit()
    );
    let name = if routed && route > 1 {
        format!("{}-{size}-route-{route}", curve.name())
    } else {
        format!("{}-{size}", curve.name())
    };
    // An upstream of its own for the size: the tool list is the only thing that differs.
    let upstream = upstream::start(tools, bench.keys.jwks.clone()).await?;
    let auth = Auth::Hs256 {
        secret: bench.keys.hmac_secret.clone(),
    };
    let listen = gateway::free_addr()?;
    let mut config = if routed {
        gateway::routes_config(listen, &upstream.mcp_url(), &auth, size)
    } else {
        gateway::config(listen, &upstream.mcp_url(), &auth)
    };
    match curve {
        Curve::CallRules => config.push_str(&tool_rules(size)),
        Curve::PrincipalRules => config.push_str(&principal_rules(size)),
        Curve::CallTools | Curve::ListTools | Curve::Routes => {}
    }
    // A route's endpoint is its public URL's path, and its tokens' audience the URL.
    let (path, audience) = if routed {
        (gateway::route_path(route), gateway::route_url(route))
    } else {
        (MCP_PATH.to_owned(), AUDIENCE.to_owned())
    };
    let (wrapper, out) = profile::wrapper(&name)?;
    let mut gateway = Gateway::spawn(
        &wrapper,
        &bench.binary,
        &bench.workdir.0,
        &name,
        &config,
        &bench.pinning.gateway,
    )?;
    let scenario = if curve.lists() {
        Scenario::ListFiltered
    } else {
        Scenario::JwtHs256
    };
    let token = bench.keys.mint(
        Alg::Hs256,
        &Audience {
            issuer: ISSUER.to_owned(),
            audience,
        },
        0,
    )?;
    let target = Target::new(
        gateway.addr,
        &path,
        scenario.body(),
        Credential::One(keys::bearer(&token)?),
    )?;
    gateway
        .wait_ready_within(&target, Duration::from_secs(180))
        .await?;
    scenario::check_answer(scenario, &target, tools)
        .await
        .with_context(|| format!("{name}: wrong answer\n{}", gateway.log_tail()))?;
    let (instructions, top) = profile::count_running(&gateway, &out, &target, warmup, requests)
        .await
        .with_context(|| name.clone())?;
    let point = Point {
        size,
        route: routed.then_some(route),
        requests,
        instructions,
        top,
    };
    eprintln!("  {:.0} instructions per request", point.per_request());
    Ok(point)
}

/// `count` more `scopes.tools` rules, none of them about `echo` (the tool called) and
/// all asking for a scope the token holds: half exact names, a quarter prefix globs,
/// a quarter globs with a class (which the glob set matches by regular expression).
/// Appended to the scenario's config, whose last key is `scopes.tools`.
pub fn tool_rules(count: usize) -> String {
    let mut yaml = String::new();
    for i in 0..count {
        let key = match i % 4 {
            0 | 2 => format!("ruled_tool_{i:05}"),
            1 => format!("ns_{i:05}_*"),
            _ => format!("db_{i:05}_[qt]*"),
        };
        let _ = writeln!(yaml, "    \"{key}\": [mcp:tools:execute]");
    }
    yaml
}

/// `count` `rules:` entries. The first is about the bench caller (subject
/// `bench-user`) and denies tools it never calls, so every request has a matching
/// rule to check; the others are each about another caller, by subject, by client
/// id, or by a value in the token's `scope` claim (as a group would be), in turn.
pub fn principal_rules(count: usize) -> String {
    let mut yaml = "rules:\n".to_owned();
    for i in 0..count {
        let (when, what) = match i % 3 {
            _ if i == 0 => (
                "subjects: [\"bench-user\"]".to_owned(),
                "deny_tools: [\"delete_*\"]".to_owned(),
            ),
            1 => (
                format!("subjects: [\"user-{i:04}\"]"),
                format!("deny_tools: [\"tool_{i:04}\"]"),
            ),
            2 => (
                format!("client_ids: [\"client-{i:04}\"]"),
                "allow_tools: [\"search_*\"]".to_owned(),
            ),
            _ => (
                format!("claims: [{{ claim: scope, contains: \"group:{i:04}\" }}]"),
                format!("deny_tools: [\"hidden_{i:04}\"]"),
            ),
        };
        let _ = writeln!(
            yaml,
            "  - {{ name: rule-{i:04}, when: {{ {when} }}, {what} }}"
        );
    }
    yaml
}

/// The markdown section: a table per curve, its ratio and its verdict.
pub fn render(
    date: &str,
    command: &str,
    counted: &[Counted],
    sessions: Option<&crate::idle::Idle>,
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "## Curves (issue #21), {date}\n");
    let _ = writeln!(text, "- Command: `{command}`");
    let _ = writeln!(
        text,
        "- Counted by callgrind: mcpgate's instructions for the requests only, after up to \
         {WARMUP_REQUESTS} uncounted ones, one connection, one request at a time; HS256 token \
         (verified once, then cached); the policy of the other scenarios (a scope per \
         method, `\"hidden_*\": [admin]` hides half of the list)"
    );
    let _ = writeln!(
        text,
        "- Flat: the costliest point at most {:.0} % above the cheapest",
        (FLAT - 1.0) * 100.0
    );
    let _ = writeln!(
        text,
        "- Dumps: `bench/target/callgrind/<curve>-<size>.callgrind.1`\n"
    );
    for entry in counted {
        curve_table(&mut text, entry);
    }
    if let Some(idle) = sessions {
        crate::report::idle_table(&mut text, idle);
    }
    text
}

fn curve_table(text: &mut String, entry: &Counted) {
    let curve = entry.curve;
    let _ = writeln!(text, "### {}: {}\n", curve.name(), curve.describe());
    match curve {
        Curve::CallRules => {
            let _ = writeln!(
                text,
                "The rules are half exact names, a quarter prefix globs (`ns_00001_*`), a \
                 quarter globs with a class (`db_00003_[qt]*`); none is about the tool called. \
                 1,000 tools upstream.\n"
            );
        }
        Curve::PrincipalRules => {
            let _ = writeln!(
                text,
                "The first rule is about the caller (its subject) and denies tools it does not \
                 call; the others are each about another caller, in turn by subject, by client \
                 id, and by a value in the `scope` claim. 1,000 tools upstream.\n"
            );
        }
        Curve::ListTools => {
            if let Some(base) = &entry.base {
                let _ = writeln!(
                    text,
                    "Per tool: (instructions per list − {:.0} for an empty list) ÷ tools.\n",
                    base.per_request()
                );
            }
        }
        Curve::Routes => {
            let _ = writeln!(
                text,
                "Each route (`r1` … `rN`) has its own `public_url` path (`/r<i>/mcp`) and \
                 inherits the policy; all are in front of the same upstream (1,000 tools). The \
                 token's audience is the called route's `public_url`. At the largest size the \
                 first route and the last are both called.\n"
            );
        }
        Curve::CallTools => {}
    }
    // A list's curve is per tool; a call's is the count per request itself.
    let (value_head, value_rule) = if curve.lists() {
        (" instructions / tool |", "---:|")
    } else {
        ("", "")
    };
    // Routes: which route each point called.
    let (route_head, route_rule) = if curve == Curve::Routes {
        (" route called |", "---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        text,
        "| {} |{route_head} requests | instructions / request |{value_head} × smallest |",
        curve.unit()
    );
    let _ = writeln!(text, "|---:|{route_rule}---:|---:|{value_rule}---:|");
    let first = entry.points.first().map(|point| entry.value(point));
    for point in &entry.points {
        let value = entry.value(point);
        let ratio = match first {
            Some(first) if first > 0.0 => format!("{:.3}", value / first),
            _ => "—".to_owned(),
        };
        let per_tool = if curve.lists() {
            format!(" {value:.1} |")
        } else {
            String::new()
        };
        let route = point
            .route
            .map(|route| format!(" `r{route}` |"))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "| {} |{route} {} | {:.0} |{per_tool} {ratio} |",
            point.size,
            point.requests,
            point.per_request(),
        );
    }
    let verdict = match entry.ratios() {
        Some((last, spread)) => format!(
            "largest ÷ smallest: {last:.3}×; costliest ÷ cheapest: {spread:.3}×: {}",
            if entry.flat() {
                "**flat (within 10 %)**"
            } else {
                "**not flat**"
            }
        ),
        None => "no ratio (a point counted nothing)".to_owned(),
    };
    let _ = writeln!(text, "\n{verdict}\n");
    if let Some(point) = entry.points.last() {
        let route = point
            .route
            .map(|route| format!(", route `r{route}`"))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "<details><summary>{} at {}{route}: heaviest functions (own instructions)</summary>\n\n```",
            curve.name(),
            point.size
        );
        for line in &point.top {
            let _ = writeln!(text, "{line}");
        }
        let _ = writeln!(text, "```\n</details>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(size: usize, per_request: u64) -> Point {
        Point {
            size,
            route: None,
            requests: 10,
            instructions: per_request * 10,
            top: Vec::new(),
        }
    }

    #[test]
    fn a_curve_is_flat_within_ten_percent_of_its_cheapest_point() {
        let flat = Counted {
            curve: Curve::CallRules,
            points: vec![point(10, 100), point(100, 109), point(1000, 104)],
            base: None,
        };
        assert_eq!(flat.ratios(), Some((1.04, 1.09)));
        assert!(flat.flat());
        let steep = Counted {
            curve: Curve::CallRules,
            points: vec![point(10, 100), point(100, 111)],
            base: None,
        };
        assert!(!steep.flat());
    }

    #[test]
    fn a_list_is_measured_per_tool_above_the_empty_list() {
        let list = Counted {
            curve: Curve::ListTools,
            points: vec![point(10, 1_100), point(100, 10_100)],
            base: Some(point(0, 100)),
        };
        assert_eq!(list.value(&list.points[0]), 100.0);
        assert_eq!(list.value(&list.points[1]), 100.0);
        assert!(list.flat());
    }

    #[test]
    fn the_routes_table_names_the_route_each_point_called() {
        let mut last = point(1000, 103);
        last.route = Some(1000);
        let mut points = vec![point(1, 100), point(1000, 102)];
        for point in &mut points {
            point.route = Some(1);
        }
        points.push(last);
        let routes = Counted {
            curve: Curve::Routes,
            points,
            base: None,
        };
        let mut text = String::new();
        curve_table(&mut text, &routes);
        assert!(text.contains("| routes: entries | route called | requests |"));
        assert!(text.contains("| 1000 | `r1` | 10 | 102 | 1.020 |"));
        assert!(text.contains("| 1000 | `r1000` | 10 | 103 | 1.030 |"));
        assert!(text.contains("**flat (within 10 %)**"));
        assert!(text.contains("at 1000, route `r1000`: heaviest"));
    }

    #[test]
    fn generated_rules_are_distinct_and_as_many_as_asked() {
        let tools = tool_rules(1000);
        assert_eq!(tools.lines().count(), 1000);
        let keys: std::collections::HashSet<&str> = tools.lines().collect();
        assert_eq!(keys.len(), 1000);
        assert!(!tools.contains("echo"));
        let rules = principal_rules(10);
        assert_eq!(rules.lines().count(), 11);
        assert!(rules.contains("subjects: [\"bench-user\"]"));
        assert!(rules.contains("client_ids: [\"client-0002\"]"));
        assert!(rules.contains("contains: \"group:0003\""));
    }
}
