//! The YAML a test gateway reads, assembled section by section, so a test states only
//! what its rule needs: `TestConfig::oauth(&upstream.url).scopes("initialize: [mcp:connect]").build()`.
//!
//! Snippets are written as they sit under their section; their common indentation is
//! dropped and the section's put in its place, so `"  a: 1\n  b: 2"` and `"a: 1\nb: 2"`
//! land the same. `{port}` and `{dir}` stay for [`super::Gateway::start`] to fill in.

use super::HMAC_SECRET;

/// The issuer every minted test token names.
pub const ISSUER: &str = "https://issuer.test";

/// The `jwks` list of the HMAC development key, selected by `kid: dev`: what
/// [`super::hs256`] signs with.
pub fn dev_jwks() -> String {
    format!("- secret: \"{HMAC_SECRET}\"\n  header_key_id: dev")
}

/// An audit log in the gateway's own directory, where [`super::audit_records`] reads it.
pub const AUDIT_IN_DIR: &str = "audit:\n  path: \"{dir}/audit.jsonl\"";

#[derive(Clone, Debug)]
pub struct TestConfig {
    server: Vec<String>,
    upstream: Vec<String>,
    oauth: Option<OAuth>,
    auth: Vec<String>,
    api_keys: Vec<String>,
    scopes: Option<String>,
    sections: Vec<String>,
}

#[derive(Clone, Debug)]
struct OAuth {
    enabled: bool,
    issuers: Option<String>,
    settings: Vec<String>,
    jwks: Option<String>,
}

impl TestConfig {
    /// A gateway in front of the Streamable HTTP upstream at `url`, with no auth section.
    pub fn new(url: &str) -> Self {
        Self::upstream_yaml(&format!("url: {url}"))
    }

    /// A gateway whose `upstream:` section is `yaml` (a command, a GraphQL endpoint…).
    pub fn upstream_yaml(yaml: &str) -> Self {
        Self {
            server: vec!["listen: 127.0.0.1:{port}".to_owned()],
            upstream: vec![yaml.to_owned()],
            oauth: None,
            auth: Vec::new(),
            api_keys: Vec::new(),
            scopes: None,
            sections: Vec::new(),
        }
    }

    /// [`Self::new`] with OAuth on: issuer `https://issuer.test`, tokens verified with
    /// the HMAC development key (`kid: dev`).
    pub fn oauth(url: &str) -> Self {
        Self::new(url).with_oauth()
    }

    /// Turns OAuth on as [`Self::oauth`] does, for a config made with
    /// [`Self::upstream_yaml`].
    pub fn with_oauth(mut self) -> Self {
        self.oauth = Some(OAuth {
            enabled: true,
            issuers: Some(format!("[{ISSUER}]")),
            settings: Vec::new(),
            jwks: Some(dev_jwks()),
        });
        self
    }

    /// `auth.oauth.enabled`, keeping the rest of the OAuth section as it is.
    pub fn oauth_enabled(mut self, enabled: bool) -> Self {
        self.oauth_mut().enabled = enabled;
        self
    }

    /// Replaces `auth.oauth.issuers` (YAML text, e.g. `"[a, b]"`).
    pub fn issuers(mut self, yaml: &str) -> Self {
        self.oauth_mut().issuers = Some(yaml.to_owned());
        self
    }

    /// No `auth.oauth.issuers` key: tokens of any issuer the keys verify.
    pub fn no_issuers(mut self) -> Self {
        self.oauth_mut().issuers = None;
        self
    }

    /// Replaces `auth.oauth.jwks` (the list, as YAML); `None` leaves no `jwks` key.
    pub fn jwks(mut self, yaml: Option<&str>) -> Self {
        self.oauth_mut().jwks = yaml.map(str::to_owned);
        self
    }

    /// More keys under `auth.oauth` (introspection, leeway, claim_scopes…).
    pub fn oauth_yaml(mut self, yaml: &str) -> Self {
        self.oauth_mut().settings.push(yaml.to_owned());
        self
    }

    /// More keys under `server`.
    pub fn server(mut self, yaml: &str) -> Self {
        self.server.push(yaml.to_owned());
        self
    }

    /// More keys under `upstream`.
    pub fn upstream(mut self, yaml: &str) -> Self {
        self.upstream.push(yaml.to_owned());
        self
    }

    /// More keys under `auth` beside `oauth` (`api_keys`…).
    pub fn auth(mut self, yaml: &str) -> Self {
        self.auth.push(yaml.to_owned());
        self
    }

    /// An API key `id` with the argon2id PHC string `hash`, and no scopes of its own.
    pub fn api_key(mut self, id: &str, hash: &str) -> Self {
        self.api_keys
            .push(format!("- id: {id}\n  hash: \"{hash}\""));
        self
    }

    /// An API key `id` with the argon2id PHC string `hash` and `scopes` (YAML text).
    pub fn api_key_with_scopes(mut self, id: &str, hash: &str, scopes: &str) -> Self {
        self.api_keys.push(format!(
            "- id: {id}\n  hash: \"{hash}\"\n  scopes: {scopes}"
        ));
        self
    }

    /// The `scopes:` section's body.
    pub fn scopes(mut self, yaml: &str) -> Self {
        let scopes = match self.scopes.take() {
            Some(earlier) => format!("{earlier}\n{}", dedent(yaml)),
            None => dedent(yaml),
        };
        self.scopes = Some(scopes);
        self
    }

    /// An audit log at `{dir}/audit.jsonl`.
    pub fn audit(self) -> Self {
        self.yaml(AUDIT_IN_DIR)
    }

    /// Top-level YAML as written (`rules:`, `session:`, `audit:`, …).
    pub fn yaml(mut self, yaml: &str) -> Self {
        self.sections.push(yaml.to_owned());
        self
    }

    fn oauth_mut(&mut self) -> &mut OAuth {
        if self.oauth.is_none() {
            *self = self.clone().with_oauth();
        }
        self.oauth.as_mut().unwrap()
    }

    pub fn build(&self) -> String {
        let mut out = String::new();
        section(&mut out, "server", &self.server, 0);
        section(&mut out, "upstream", &self.upstream, 0);
        if self.oauth.is_some() || !self.auth.is_empty() || !self.api_keys.is_empty() {
            out.push_str("auth:\n");
            if let Some(oauth) = &self.oauth {
                let mut lines = vec![format!("enabled: {}", oauth.enabled)];
                lines.extend(
                    oauth
                        .issuers
                        .iter()
                        .map(|issuers| format!("issuers: {issuers}")),
                );
                lines.extend(oauth.settings.iter().cloned());
                if let Some(jwks) = &oauth.jwks {
                    lines.push(format!("jwks:\n{}", indent(&dedent(jwks), 2)));
                }
                section(&mut out, "oauth", &lines, 2);
            }
            if !self.api_keys.is_empty() {
                section(&mut out, "api_keys", &self.api_keys, 2);
            }
            for yaml in &self.auth {
                push_block(&mut out, yaml, 2);
            }
        }
        if let Some(scopes) = &self.scopes {
            section(&mut out, "scopes", std::slice::from_ref(scopes), 0);
        }
        for yaml in &self.sections {
            push_block(&mut out, yaml, 0);
        }
        out
    }
}

impl From<TestConfig> for String {
    fn from(config: TestConfig) -> Self {
        config.build()
    }
}

fn section(out: &mut String, name: &str, blocks: &[String], depth: usize) {
    out.push_str(&" ".repeat(depth));
    out.push_str(name);
    out.push_str(":\n");
    for block in blocks {
        push_block(out, block, depth + 2);
    }
}

fn push_block(out: &mut String, yaml: &str, depth: usize) {
    let block = indent(&dedent(yaml), depth);
    if !block.is_empty() {
        out.push_str(&block);
        out.push('\n');
    }
}

/// `yaml` without its blank edges and without the indentation all its lines share.
pub fn dedent(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines.iter().position(|l| !l.trim().is_empty());
    let end = lines.iter().rposition(|l| !l.trim().is_empty());
    let (Some(start), Some(end)) = (start, end) else {
        return String::new();
    };
    let lines = &lines[start..=end];
    let common = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| l.get(common..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `yaml` with `depth` spaces before each line.
pub fn indent(yaml: &str, depth: usize) -> String {
    let pad = " ".repeat(depth);
    yaml.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn snippets_land_under_their_section_whatever_their_indentation() {
    let yaml = TestConfig::oauth("http://127.0.0.1:9/mcp")
        .server("  max_body_bytes: 1024")
        .upstream("timeout: 1s")
        .oauth_yaml("    leeway: 5s")
        .api_key("ci", "$argon2id$x")
        .api_key_with_scopes("live", "$argon2id$y", "[a]")
        .scopes("\n  initialize: [mcp:connect]\n  tools:\n    echo: a\n")
        .scopes("default: [b]")
        .audit()
        .yaml("rules:\n  - name: r\n    deny_tools: [x]\n")
        .build();
    let expected = format!(
        r#"server:
  listen: 127.0.0.1:{{port}}
  max_body_bytes: 1024
upstream:
  url: http://127.0.0.1:9/mcp
  timeout: 1s
auth:
  oauth:
    enabled: true
    issuers: [https://issuer.test]
    leeway: 5s
    jwks:
      - secret: "{HMAC_SECRET}"
        header_key_id: dev
  api_keys:
    - id: ci
      hash: "$argon2id$x"
    - id: live
      hash: "$argon2id$y"
      scopes: [a]
scopes:
  initialize: [mcp:connect]
  tools:
    echo: a
  default: [b]
audit:
  path: "{{dir}}/audit.jsonl"
rules:
  - name: r
    deny_tools: [x]
"#
    );
    assert_eq!(yaml, expected);
}

#[test]
fn a_config_without_oauth_has_no_auth_section() {
    let yaml = TestConfig::new("http://127.0.0.1:9/mcp").build();
    assert_eq!(
        yaml,
        "server:\n  listen: 127.0.0.1:{port}\nupstream:\n  url: http://127.0.0.1:9/mcp\n"
    );
}
