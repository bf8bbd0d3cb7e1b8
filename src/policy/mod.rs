//! Principal × MCP message → decision. Pure: no I/O, no HTTP or JSON types; `mcp/`
//! says what a message is about ([`Target`]), `server/` turns a denial into a response.
//!
//! A message's requirement is every level that applies at once: the every-request
//! level, its method's level, and each rule matching its tool, resource or prompt.
//! Deciding only needs each level checked on its own (a product of ORs is met
//! exactly when each factor is); the product itself is built only to name, in one
//! challenge, the cheapest way to satisfy all of them.

mod decision;
mod explain;
mod glob_index;
mod hierarchy;
mod look_alike;
pub mod matrix;
mod principal_rules;
mod requirement;
mod rules;

#[cfg(test)]
mod tests;

pub use decision::{Computed, PolicyRefusal, Question};
pub use explain::AppliedRequirement;
pub use hierarchy::{Cycle, Granted, Hierarchy};
use look_alike::{LookAlikes, LookAlikesBuilder};
pub use principal_rules::{Matched, PrincipalRules, RuleDenial, RuleList, Who};
pub use requirement::{Holds, Requirement, Shortfall, TooManyCombinations};
pub(crate) use rules::compile_glob;
pub use rules::{NamedRule, NamedRules};

use std::collections::{BTreeSet, HashMap};

use crate::auth::Scopes;
use crate::config::{Config, ConfigError, RequirementSpec};

/// The method level a message falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// GET/DELETE, `initialize`, `ping`, notifications and responses: the
    /// every-request level only.
    Connection,
    /// `tools/list` (`scopes.tools_list`).
    ToolsList,
    /// `tools/call` (`scopes.tools_call`), then the per-tool rule.
    ToolsCall,
    /// `resources/list` (`scopes.resources_list`).
    ResourcesList,
    /// `resources/templates/list` (`scopes.resources_templates_list`).
    ResourcesTemplatesList,
    /// `resources/read` (`scopes.resources_read`), then the per-resource rule.
    ResourcesRead,
    /// `prompts/list` (`scopes.prompts_list`).
    PromptsList,
    /// `prompts/get` (`scopes.prompts_get`), then the per-prompt rule.
    PromptsGet,
    /// `completion/complete` (`scopes.completion_complete`).
    CompletionComplete,
    /// Any other request method, known or not.
    Default,
}

/// The named thing a message acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A tool, by name (`tools/call`'s `params.name`).
    Tool(&'a str),
    /// A resource, by URI (`resources/read`'s `params.uri`).
    Resource(&'a str),
    /// A prompt, by name (`prompts/get`'s `params.name`).
    Prompt(&'a str),
}

impl Item<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Tool(name) => format!("tool {name}"),
            Self::Resource(uri) => format!("resource {uri}"),
            Self::Prompt(name) => format!("prompt {name}"),
        }
    }
}

/// What one message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub(crate) level: Level,
    pub(crate) item: Option<Item<'a>>,
}

impl Target<'_> {
    /// GET, DELETE and the messages that only need the every-request level: no item.
    pub const CONNECTION: Target<'static> = Target {
        level: Level::Connection,
        item: None,
    };
}

/// The scope rules in force.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    limit: usize,
    hierarchy: Hierarchy,
    every_request: Requirement,
    tools_list: Requirement,
    tools_call: Requirement,
    resources_list: Requirement,
    resources_templates_list: Requirement,
    resources_read: Requirement,
    prompts_list: Requirement,
    prompts_get: Requirement,
    completion_complete: Requirement,
    default: Requirement,
    tools: NamedRules,
    resources: NamedRules,
    prompts: NamedRules,
    /// Requirements the upstream declares for its own tools (a GraphQL operation's
    /// `@requiresScopes`, a built-in tool's scopes), by exact tool name. Only
    /// non-empty ones are kept.
    declared: HashMap<String, NamedRule>,
    scopes_supported: Vec<String>,
    /// `rules:`, applied after the scope checks.
    principal_rules: PrincipalRules,
    /// Every name and pattern a rule above matches, by kind (declared tools
    /// included), and the same folded: what a look-alike name is checked against.
    ruled_names: Vec<(ItemKind, String)>,
    look_alikes: LookAlikes,
}

/// A tool requirement the upstream declares itself rather than the `scopes:`
/// section: it applies like a `scopes.tools` rule naming that exact tool, on top of
/// `tools_call` and any rule that matches the tool too.
#[derive(Debug, Clone)]
pub struct DeclaredTool {
    pub(crate) tool: String,
    pub(crate) requirement: Requirement,
    /// Where the requirement comes from, as `mcpgate policy` lists it among the
    /// tool's rules (`@requiresScopes of operation GetFacts`).
    pub source: String,
    /// The configuration key an error names (`upstream.graphql.operations`).
    pub key: String,
    /// What an error calls it (`operation GetFacts (ops/facts.graphql)`).
    pub subject: String,
}

/// Why a verified caller was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Scopes to ask for (the `scope` of the challenge).
    pub challenge_scopes: Vec<String>,
    /// The `error_description` of the challenge.
    pub description: String,
}

/// One requirement that applies to a message, and whether it is about an item.
struct Factor<'p, 'm> {
    requirement: &'p Requirement,
    item: Option<Item<'m>>,
}

impl Policy {
    /// Compiles the `scopes:` section. Every combination a single message can need is
    /// built once here, so exceeding `max_scope_combinations` is a load error naming
    /// the rule rather than a surprise at request time.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let scopes = &config.scopes;
        let hierarchy = Hierarchy::new(&scopes.hierarchy)
            .map_err(|cycle| ConfigError::invalid("scopes.hierarchy", cycle.to_string()))?;
        let policy = Self {
            limit: config.auth.oauth.max_scope_combinations,
            hierarchy,
            every_request: compile(&scopes.initialize),
            tools_list: compile(&scopes.tools_list),
            tools_call: compile(&scopes.tools_call),
            resources_list: compile(&scopes.resources_list),
            resources_templates_list: compile(&scopes.resources_templates_list),
            resources_read: compile(&scopes.resources_read),
            prompts_list: compile(&scopes.prompts_list),
            prompts_get: compile(&scopes.prompts_get),
            completion_complete: compile(&scopes.completion_complete),
            default: compile(&scopes.default),
            tools: NamedRules::new("scopes.tools", &scopes.tools)?,
            resources: NamedRules::for_resources("scopes.resources", &scopes.resources)?,
            prompts: NamedRules::new("scopes.prompts", &scopes.prompts)?,
            declared: HashMap::new(),
            scopes_supported: Vec::new(),
            principal_rules: PrincipalRules::from_config(config)?,
            ruled_names: ruled_names(config),
            look_alikes: LookAlikes::default(),
        };
        policy.check_combinations()?;
        let scopes_supported = policy.collect_scopes();
        let look_alikes = build_look_alikes(&policy.ruled_names);
        Ok(Self {
            scopes_supported,
            look_alikes,
            ..policy
        })
    }

    /// Whether `item` differs from a name the rules match only by case, width,
    /// whitespace or Unicode compatibility: refused, since an upstream that folds
    /// names would run the ruled item under checks that did not apply to it.
    pub fn resembles_a_rule(&self, item: Item<'_>) -> bool {
        self.look_alikes.resembles_a_rule(item)
    }

    fn check_combinations(&self) -> Result<(), ConfigError> {
        let too_many = |key: String, levels: &str, error: TooManyCombinations| {
            ConfigError::invalid(
                key,
                format!(
                    "combined with {levels} it {error} (auth.oauth.max_scope_combinations); \
                     simplify the rule or raise the limit"
                ),
            )
        };
        for (name, level) in self.method_levels() {
            self.every_request
                .and(level, self.limit)
                .map_err(|error| too_many(format!("scopes.{name}"), "scopes.initialize", error))?;
        }
        let per_item = [
            ("tools", "tools_call", &self.tools, &self.tools_call),
            (
                "resources",
                "resources_read",
                &self.resources,
                &self.resources_read,
            ),
            ("prompts", "prompts_get", &self.prompts, &self.prompts_get),
        ];
        for (kind, level_name, rules, level) in per_item {
            let base = self
                .every_request
                .and(level, self.limit)
                .unwrap_or_default();
            for rule in rules.rules() {
                base.and(&rule.requirement, self.limit).map_err(|error| {
                    too_many(
                        format!("scopes.{kind}.{}", rule.pattern),
                        &format!("scopes.initialize and scopes.{level_name}"),
                        error,
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Adds what the upstream declares for its tools, and `more_scopes` to
    /// `scopes_supported` (scopes a request can come to need that no rule names, such
    /// as those of the fields an `execute_graphql` query may select). A tool whose
    /// whole requirement (every-request level, `tools_call`, matching rules and its
    /// own) exceeds `max_scope_combinations` is a load error naming it.
    pub fn with_declared_tools(
        mut self,
        tools: Vec<DeclaredTool>,
        more_scopes: Vec<String>,
    ) -> Result<Self, ConfigError> {
        let base = self
            .every_request
            .and(&self.tools_call, self.limit)
            .unwrap_or_default();
        for tool in tools {
            let too_many = |error: TooManyCombinations| {
                ConfigError::invalid(
                    &tool.key,
                    format!(
                        "{}: combined with scopes.initialize, scopes.tools_call and the rules \
                         matching tool {} it {error} (auth.oauth.max_scope_combinations); \
                         simplify it or raise the limit",
                        tool.subject, tool.tool
                    ),
                )
            };
            let mut combined = base.clone();
            for rule in self.tools.matching(&tool.tool) {
                combined = combined
                    .and(&rule.requirement, self.limit)
                    .map_err(too_many)?;
            }
            combined
                .and(&tool.requirement, self.limit)
                .map_err(too_many)?;
            if !tool.requirement.is_empty() {
                self.ruled_names.push((ItemKind::Tool, tool.tool.clone()));
                self.declared.insert(
                    tool.tool,
                    NamedRule {
                        pattern: tool.source,
                        requirement: tool.requirement,
                        is_glob: false,
                    },
                );
            }
        }
        let mut all: BTreeSet<String> = std::mem::take(&mut self.scopes_supported)
            .into_iter()
            .collect();
        for rule in self.declared.values() {
            all.extend(rule.requirement.scopes().map(str::to_owned));
        }
        all.extend(more_scopes);
        self.scopes_supported = all.into_iter().collect();
        self.look_alikes = build_look_alikes(&self.ruled_names);
        Ok(self)
    }

    fn method_levels(&self) -> [(&'static str, &Requirement); 9] {
        [
            ("tools_list", &self.tools_list),
            ("tools_call", &self.tools_call),
            ("resources_list", &self.resources_list),
            ("resources_templates_list", &self.resources_templates_list),
            ("resources_read", &self.resources_read),
            ("prompts_list", &self.prompts_list),
            ("prompts_get", &self.prompts_get),
            ("completion_complete", &self.completion_complete),
            ("default", &self.default),
        ]
    }

    fn collect_scopes(&self) -> Vec<String> {
        let mut all: BTreeSet<&str> = self.every_request.scopes().collect();
        for (_, level) in self.method_levels() {
            all.extend(level.scopes());
        }
        for rules in [&self.tools, &self.resources, &self.prompts] {
            for rule in rules.rules() {
                all.extend(rule.requirement.scopes());
            }
        }
        all.into_iter().map(str::to_owned).collect()
    }

    /// The scopes a bare 401 names: the cheapest way to pass the every-request level.
    pub fn connect_scopes(&self) -> Vec<String> {
        self.every_request
            .check(&Nothing)
            .err()
            .map(|shortfall| shortfall.missing)
            .unwrap_or_default()
    }

    /// The sorted union of every scope any rule names (RFC 9728 `scopes_supported`).
    pub fn scopes_supported(&self) -> &[String] {
        &self.scopes_supported
    }

    /// The closure of `scopes.hierarchy`: which broad scope implies which.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// The compiled `rules:`.
    pub fn principal_rules(&self) -> &PrincipalRules {
        &self.principal_rules
    }

    /// The caller's scopes with the hierarchy applied, for [`Self::authorize`] and
    /// [`Self::may_use`].
    pub fn grant<'a>(&'a self, scopes: &'a Scopes) -> Granted<'a> {
        self.hierarchy.grant(scopes)
    }

    /// Whether any per-item rule exists for lists of this kind (else lists pass as is).
    pub fn filters(&self, kind: ItemKind) -> bool {
        !self.rules_for(kind).is_empty() || (kind == ItemKind::Tool && !self.declared.is_empty())
    }

    /// Whether lists of this kind can differ from one caller to another: a per-item
    /// rule of that kind, or a `rules:` entry about it, whoever it matches. Such a
    /// list must never be cached for everyone (`cacheScope: "private"`).
    pub fn could_filter(&self, kind: ItemKind) -> bool {
        self.filters(kind) || self.principal_rules.about(kind)
    }

    /// Whether a `resources/read` of `uri` can be refused to some caller: the
    /// `resources_read` level, a per-resource rule matching it, or a `rules:` entry
    /// refusing it. Its result is then not for everyone's cache either.
    pub fn read_could_be_refused(&self, uri: &str) -> bool {
        !self.resources_read.is_empty()
            || self
                .resources
                .matching(uri)
                .iter()
                .any(|rule| !rule.requirement.is_empty())
            || self.principal_rules.could_refuse(Item::Resource(uri))
    }

    pub(crate) fn rules_for(&self, kind: ItemKind) -> &NamedRules {
        match kind {
            ItemKind::Tool => &self.tools,
            ItemKind::Resource => &self.resources,
            ItemKind::Prompt => &self.prompts,
        }
    }

    /// Whether the caller meets every rule of this item (what list filtering shows).
    pub fn may_use(&self, granted: &Granted<'_>, item: Item<'_>) -> bool {
        granted.is_everything()
            || self
                .item_rules(item)
                .iter()
                .all(|rule| rule.requirement.is_met_by(granted))
    }

    fn item_rules(&self, item: Item<'_>) -> Vec<&NamedRule> {
        match item {
            Item::Tool(name) => {
                let mut rules = self.tools.matching(name);
                rules.extend(self.declared.get(name));
                rules
            }
            Item::Resource(uri) => self.resources.matching(uri),
            Item::Prompt(name) => self.prompts.matching(name),
        }
    }

    fn level(&self, level: Level) -> &Requirement {
        match level {
            Level::Connection => &EMPTY,
            Level::ToolsList => &self.tools_list,
            Level::ToolsCall => &self.tools_call,
            Level::ResourcesList => &self.resources_list,
            Level::ResourcesTemplatesList => &self.resources_templates_list,
            Level::ResourcesRead => &self.resources_read,
            Level::PromptsList => &self.prompts_list,
            Level::PromptsGet => &self.prompts_get,
            Level::CompletionComplete => &self.completion_complete,
            Level::Default => &self.default,
        }
    }

    /// Every requirement that applies to these messages (a batch has several), the
    /// every-request level first, each distinct requirement once.
    fn factors<'p, 'm>(&'p self, targets: &[Target<'m>]) -> Vec<Factor<'p, 'm>> {
        let mut factors = vec![Factor {
            requirement: &self.every_request,
            item: None,
        }];
        let mut push = |requirement: &'p Requirement, item: Option<Item<'m>>| {
            if !requirement.is_empty()
                && !factors
                    .iter()
                    .any(|f| std::ptr::eq(f.requirement, requirement) && f.item == item)
            {
                factors.push(Factor { requirement, item });
            }
        };
        for target in targets {
            push(self.level(target.level), None);
            if let Some(item) = target.item {
                for rule in self.item_rules(item) {
                    push(&rule.requirement, Some(item));
                }
            }
        }
        factors
    }

    /// The whole requirement of these messages as one OR-of-ANDs (what `mcpgate
    /// policy` prints and what a challenge is chosen from).
    pub fn requirement_for(
        &self,
        targets: &[Target<'_>],
    ) -> Result<Requirement, TooManyCombinations> {
        let mut combined = Requirement::none();
        for factor in self.factors(targets) {
            combined = combined.and(factor.requirement, self.limit)?;
        }
        Ok(combined)
    }

    /// Decides one HTTP request: `targets` are its messages (one, several for a
    /// batch, or [`Target::CONNECTION`] for GET and DELETE). With `echo_token_scopes`
    /// the challenge lists the token's scopes first (for clients that replace, rather
    /// than add to, their scopes on step-up).
    pub fn authorize(
        &self,
        scopes: &Scopes,
        targets: &[Target<'_>],
        echo_token_scopes: bool,
    ) -> Result<(), Denial> {
        let granted = self.grant(scopes);
        if granted.is_everything() {
            return Ok(());
        }
        let factors = self.factors(targets);
        let failing: Vec<&Factor<'_, '_>> = factors
            .iter()
            .filter(|factor| !factor.requirement.is_met_by(&granted))
            .collect();
        if failing.is_empty() {
            return Ok(());
        }
        let missing = self.cheapest_missing(&factors, &failing, &granted);
        let description = match single_item(&failing) {
            Some(item) => format!("insufficient scopes for {}", item.describe()),
            None => format!("missing required scopes: {}", missing.join(", ")),
        };
        Err(Denial {
            challenge_scopes: challenge_scopes(
                &granted,
                missing,
                echo_token_scopes,
                &self.scopes_supported,
            ),
            description,
        })
    }

    /// Decides a requirement that only the message itself tells (the fields an
    /// `execute_graphql` query selects), for a message [`Self::authorize`] has let
    /// through: the challenge names the cheapest of its groups, as for a tool rule.
    pub fn authorize_item(
        &self,
        scopes: &Scopes,
        item: Item<'_>,
        requirement: &Requirement,
        echo_token_scopes: bool,
    ) -> Result<(), Denial> {
        let granted = self.grant(scopes);
        if granted.is_everything() {
            return Ok(());
        }
        match requirement.check(&granted) {
            Ok(()) => Ok(()),
            Err(shortfall) => Err(Denial {
                challenge_scopes: challenge_scopes(
                    &granted,
                    shortfall.missing,
                    echo_token_scopes,
                    &self.scopes_supported,
                ),
                description: format!("insufficient scopes for {}", item.describe()),
            }),
        }
    }

    /// The missing scopes of the product's cheapest group. Should a batch's product
    /// exceed the limit, the failing factors' own shortfalls, united, still name a
    /// set that satisfies the request (if not always the smallest one).
    fn cheapest_missing(
        &self,
        factors: &[Factor<'_, '_>],
        failing: &[&Factor<'_, '_>],
        granted: &Granted<'_>,
    ) -> Vec<String> {
        let mut combined = Some(Requirement::none());
        for factor in factors {
            combined = combined.and_then(|so_far| so_far.and(factor.requirement, self.limit).ok());
        }
        if let Some(Err(shortfall)) = combined.map(|requirement| requirement.check(granted)) {
            return shortfall.missing;
        }
        let mut missing: Vec<String> = Vec::new();
        for factor in failing {
            if let Err(shortfall) = factor.requirement.check(granted) {
                for scope in shortfall.missing {
                    if !missing.contains(&scope) {
                        missing.push(scope);
                    }
                }
            }
        }
        missing
    }
}

/// The kinds of item a list response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// Tools, from `tools/list`.
    Tool,
    /// Resources and resource templates, from `resources/list` and
    /// `resources/templates/list`.
    Resource,
    /// Prompts, from `prompts/list`.
    Prompt,
}

/// The one item whose own rules are all that fails, if that is the case (the seeds'
/// `insufficient scopes for tool <name>`).
fn single_item<'m>(failing: &[&Factor<'_, 'm>]) -> Option<Item<'m>> {
    let first = failing.first()?.item?;
    failing
        .iter()
        .all(|factor| factor.item == Some(first))
        .then_some(first)
}

/// The scope that asks an authorization server for a refresh token. MCP 2026-07-28
/// says a resource server should not put it in its metadata or challenges; mcpgate
/// does only when a rule names it.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// The `scope` of a challenge: the missing scopes, after the token's own with
/// `echo_token_scopes` (for clients that replace, rather than add to, their scopes
/// on step-up); a token's `offline_access` is echoed only when a rule names it.
fn challenge_scopes(
    granted: &Granted<'_>,
    missing: Vec<String>,
    echo: bool,
    scopes_supported: &[String],
) -> Vec<String> {
    if !echo {
        return missing;
    }
    let offline_configured = scopes_supported.iter().any(|scope| scope == OFFLINE_ACCESS);
    let mut scopes: Vec<String> = granted
        .listed()
        .filter(|scope| *scope != OFFLINE_ACCESS || offline_configured)
        .map(str::to_owned)
        .collect();
    for scope in missing {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

fn compile(spec: &RequirementSpec) -> Requirement {
    Requirement::any_of(spec.groups.iter().cloned())
}

static EMPTY: Requirement = Requirement::EMPTY;

/// Holds no scope: what a caller without a token has.
struct Nothing;

impl Holds for Nothing {
    fn holds(&self, _: &str) -> bool {
        false
    }
}

/// Every name and pattern that `scopes:` and `rules:` match, by kind.
fn ruled_names(config: &Config) -> Vec<(ItemKind, String)> {
    let scopes = &config.scopes;
    let mut names: Vec<(ItemKind, String)> = Vec::new();
    let per_kind = [
        (ItemKind::Tool, &scopes.tools),
        (ItemKind::Resource, &scopes.resources),
        (ItemKind::Prompt, &scopes.prompts),
    ];
    for (kind, rules) in per_kind {
        names.extend(rules.keys().map(|name| (kind, name.clone())));
    }
    for rule in &config.rules {
        let lists = [
            (
                ItemKind::Tool,
                rule.allow_tools.as_deref(),
                &rule.deny_tools,
            ),
            (
                ItemKind::Resource,
                rule.allow_resources.as_deref(),
                &rule.deny_resources,
            ),
            (
                ItemKind::Prompt,
                rule.allow_prompts.as_deref(),
                &rule.deny_prompts,
            ),
        ];
        for (kind, allow, deny) in lists {
            let patterns = allow.unwrap_or_default().iter().chain(deny);
            names.extend(patterns.map(|pattern| (kind, pattern.clone())));
        }
    }
    names
}

fn build_look_alikes(names: &[(ItemKind, String)]) -> LookAlikes {
    let mut builder = LookAlikesBuilder::default();
    for (kind, name) in names {
        builder.add(*kind, name);
    }
    builder.build()
}
