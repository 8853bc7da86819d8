//! The one text checker: what a text the sidecar writes would make the forge
//! do, decided before the text is sent.
//!
//! Gitea acts on the text of comments, descriptions, pull request titles
//! and commit messages: a closing or reopening keyword before a reference
//! (`closes #5`) closes or reopens that issue, a plain reference (`#5`,
//! `owner/repo#5`, an issue URL) puts a cross-reference notice on it, and an
//! `@user` or `@org/team` mention notifies them. A write is in scope only if
//! all of that stays in scope, so every text goes through [`check`] first:
//!
//! * **Closing and reopening references** are looked for in every way the
//!   text can be read: the Markdown view (parsed with `pulldown-cmark`, laid
//!   out as Gitea's stripper does, see [`markdown`]) with its link
//!   destinations, and the raw text with a loose boundary (see [`finder`]),
//!   so that a construct the parser reads differently from Gitea still fails
//!   closed; each of these again after decoding HTML entities and after
//!   folding invisible and look-alike Unicode characters (see [`fold`]). One
//!   aimed outside the writable set, in any of these, refuses the text
//!   ([`Refusal::ActsOutside`]).
//! * **Plain references and mentions** are counted in the Markdown view,
//!   as Gitea reads them (code is not read): more than
//!   [`TextRules::max_foreign_refs`] distinct references outside the
//!   writable set, or more than [`TextRules::max_mentions`] distinct
//!   mentions, refuse the text. The ones within the limits are returned in
//!   [`Findings`] for the audit.
//!
//! ```
//! use forge_sidecar::text_check::{check, default_rules, Policy};
//!
//! let policy = Policy::new("acme", "widgets", &[17, 18], &default_rules());
//! let found = check("Closes #17; see #500, thanks @alice", &policy).unwrap();
//! assert_eq!(found.foreign_refs[0].to_string(), "#500");
//! assert_eq!(found.mentions, ["alice"]);
//! assert!(check("> fixes #500", &policy).is_err());
//! ```
//!
//! For a pull request, check the title and the body each: Gitea reads both.

pub mod finder;
pub mod fold;
pub mod gourl;
pub mod markdown;

use std::fmt;

use forge_protocol::error::number_list;
use forge_protocol::{ErrorCode, RpcError, TextRules};
use serde_json::json;

use finder::{Destinations, Finder, RawAction, RawRef};

/// Gitea's default closing keywords (`[repository.pull-request] CLOSE_KEYWORDS`).
pub const DEFAULT_CLOSE_KEYWORDS: [&str; 9] = [
    "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved",
];
/// Gitea's default reopening keywords (`REOPEN_KEYWORDS`).
pub const DEFAULT_REOPEN_KEYWORDS: [&str; 3] = ["reopen", "reopens", "reopened"];
/// Default most distinct references outside the writable set per text.
pub const DEFAULT_MAX_FOREIGN_REFS: u32 = 10;
/// Default most distinct `@` mentions per text.
pub const DEFAULT_MAX_MENTIONS: u32 = 5;
/// The highest either per-text limit may be set to.
pub const MAX_TEXT_LIMIT: u32 = 50;

/// The default rules: Gitea's default keywords and the default limits.
pub fn default_rules() -> TextRules {
    TextRules {
        close_keywords: DEFAULT_CLOSE_KEYWORDS.map(String::from).to_vec(),
        reopen_keywords: DEFAULT_REOPEN_KEYWORDS.map(String::from).to_vec(),
        max_foreign_refs: DEFAULT_MAX_FOREIGN_REFS,
        max_mentions: DEFAULT_MAX_MENTIONS,
    }
}

/// `defaults` plus the words of `extra`, a comma-separated list as in
/// Gitea's app.ini (`fixes, schliesst`): trimmed, lower-cased, without
/// duplicates. Extra words add to the defaults and never replace them:
/// refusing a word the server ignores is safe, missing one it acts on is
/// not. A word must be letters only, as Gitea ignores anything else; the
/// error names the word.
pub fn keyword_list(defaults: &[&str], extra: &str) -> Result<Vec<String>, String> {
    let mut words: Vec<String> = defaults.iter().map(|w| w.to_string()).collect();
    for word in extra.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if !word.chars().all(char::is_alphabetic) {
            return Err(format!(
                "'{word}' is not a keyword Gitea accepts (letters only); give a comma-separated list such as 'schliesst,behebt'"
            ));
        }
        let word = word.to_lowercase();
        if !words.contains(&word) {
            words.push(word);
        }
    }
    Ok(words)
}

/// What a text may do: the repository, the writable numbers, the keywords
/// and the limits, with the patterns compiled once.
#[derive(Debug)]
pub struct Policy {
    repo: String,
    writable: Vec<u64>,
    rules: TextRules,
    finder: Finder,
}

impl Policy {
    /// The policy for texts written to `owner/repo` by a session that may
    /// write to `writable`.
    pub fn new(owner: &str, repo: &str, writable: &[u64], rules: &TextRules) -> Policy {
        let keywords = rules.close_keywords.iter().chain(&rules.reopen_keywords);
        Policy {
            repo: format!("{owner}/{repo}").to_lowercase(),
            writable: writable.to_vec(),
            rules: rules.clone(),
            finder: Finder::new(keywords.map(String::as_str)),
        }
    }

    /// The keywords and limits in force.
    pub fn rules(&self) -> &TextRules {
        &self.rules
    }

    /// The writable numbers.
    pub fn writable(&self) -> &[u64] {
        &self.writable
    }

    fn reference(&self, raw: &RawRef) -> Reference {
        let repo = raw
            .repo
            .as_ref()
            .map(|r| r.to_lowercase())
            .filter(|r| *r != self.repo);
        Reference {
            repo,
            number: raw.number,
        }
    }

    fn in_scope(&self, r: &Reference) -> bool {
        r.repo.is_none() && u64::try_from(r.number).is_ok_and(|n| self.writable.contains(&n))
    }

    fn action_of(&self, keyword: &str) -> Action {
        let word = keyword.to_lowercase();
        // Whatever matched and is not a closing word (case-folded spellings
        // included) is treated as the stronger claim: closing.
        if self.rules.reopen_keywords.contains(&word) && !self.rules.close_keywords.contains(&word)
        {
            Action::Reopen
        } else {
            Action::Close
        }
    }
}

/// An issue or pull request a text refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `owner/repo` in lower case when it is another repository; `None` for
    /// the session's own repository (however it was written).
    pub repo: Option<String>,
    /// The number as the forge parses it (leading zeros dropped; negative
    /// only from a link path such as `/issues/-5`).
    pub number: i64,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repo {
            Some(repo) => write!(f, "{repo}#{}", self.number),
            None => write!(f, "#{}", self.number),
        }
    }
}

/// What a keyword does to the issue it refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Closes it (when the pull request merges).
    Close,
    /// Reopens it.
    Reopen,
}

impl Action {
    /// `close` or `reopen`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Close => "close",
            Action::Reopen => "reopen",
        }
    }
}

/// How the text was read when a reference was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The text with the Markdown removed, as the forge reads it.
    Markdown,
    /// A keyword right before a Markdown link to the issue.
    Link,
    /// The raw text, markup and code included.
    Raw,
}

/// Where a closing or reopening reference was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// How the text was read.
    pub view: View,
    /// Found only after decoding HTML entities.
    pub entities_decoded: bool,
    /// Found only after removing invisible characters and reading
    /// look-alike characters as the ASCII they imitate.
    pub unicode_folded: bool,
    /// The keyword through the reference, as read (at most 80 characters).
    pub excerpt: String,
}

impl Found {
    /// A short code for the view: `markdown`, `link` or `raw`, with
    /// `+entities` and `+unicode` when those readings were needed.
    pub fn code(&self) -> String {
        let mut s = match self.view {
            View::Markdown => "markdown",
            View::Link => "link",
            View::Raw => "raw",
        }
        .to_string();
        if self.entities_decoded {
            s.push_str("+entities");
        }
        if self.unicode_folded {
            s.push_str("+unicode");
        }
        s
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.view {
            View::Markdown => "in the text as the forge reads it once the Markdown is removed",
            View::Link => "right before a Markdown link to it",
            View::Raw => {
                "in the raw text (markup, code and HTML do not hide a keyword from this check)"
            }
        })?;
        match (self.entities_decoded, self.unicode_folded) {
            (false, false) => Ok(()),
            (true, false) => f.write_str(", after decoding HTML entities"),
            (false, true) => f.write_str(
                ", after removing invisible characters and reading look-alike characters as the letters they imitate",
            ),
            (true, true) => f.write_str(
                ", after decoding HTML entities, removing invisible characters and reading look-alike characters as the letters they imitate",
            ),
        }
    }
}

/// A closing or reopening reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRef {
    /// The keyword as written (`Fixes`).
    pub keyword: String,
    /// Close or reopen.
    pub action: Action,
    /// The issue or pull request it acts on.
    pub target: Reference,
    /// Where it was found.
    pub found: Found,
}

impl fmt::Display for ActionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.keyword, self.target)
    }
}

/// What an accepted text does, for the audit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Distinct references to issues and pull requests outside the writable
    /// set (each gets a cross-reference notice), in order of appearance.
    pub foreign_refs: Vec<Reference>,
    /// Distinct `@` mentions (user or `org/team`, without the `@`), in order.
    pub mentions: Vec<String>,
    /// Closing and reopening references, all within the writable set.
    pub closing: Vec<ActionRef>,
}

/// Why a text is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A closing or reopening reference aimed outside the writable set.
    ActsOutside(ActionRef),
    /// More distinct references outside the writable set than allowed.
    TooManyForeignRefs {
        /// The references found.
        refs: Vec<Reference>,
        /// The limit.
        max: u32,
    },
    /// More distinct mentions than allowed.
    TooManyMentions {
        /// The mentions found (without `@`).
        mentions: Vec<String>,
        /// The limit.
        max: u32,
    },
}

impl Refusal {
    /// The error for the caller; `subject` names the text, e.g.
    /// `comment to #17` or `description of #18`.
    pub fn to_rpc_error(&self, subject: &str, policy: &Policy) -> RpcError {
        let writable = number_list(&policy.writable);
        match self {
            Refusal::ActsOutside(a) => {
                let target = &a.target;
                RpcError::new(
                    ErrorCode::ScopeDenied,
                    format!(
                        "{subject} denied: '{excerpt}' is a {action} reference to {target} (keyword '{keyword}', found {found}); \
                         the forge would {action} {target}, which is outside the assigned scope (writable: {writable}); \
                         mention it without the keyword instead, e.g. 'see {target}' or 'related to {target}'",
                        excerpt = a.found.excerpt,
                        action = a.action.as_str(),
                        keyword = a.keyword,
                        found = a.found,
                    ),
                )
                .with_data(json!({
                    "writable": policy.writable,
                    "referenced": target.to_string(),
                    "keyword": a.keyword.to_lowercase(),
                    "action": a.action.as_str(),
                    "found": a.found.code(),
                    "excerpt": a.found.excerpt,
                }))
            }
            Refusal::TooManyForeignRefs { refs, max } => RpcError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{subject} denied: it refers to {} issues or pull requests outside the assigned scope ({}), \
                     over the limit of {max} per text (max_foreign_refs); the forge puts a notice on each one. \
                     Refer to fewer, or write them without '#' (e.g. 'issue 500')",
                    refs.len(),
                    list(refs.iter().map(ToString::to_string)),
                ),
            )
            .with_data(json!({ "limit": "max_foreign_refs", "max": max, "found": refs.len() })),
            Refusal::TooManyMentions { mentions, max } => RpcError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "{subject} denied: it mentions {} users or teams ({}), over the limit of {max} per text \
                     (max_mentions); the forge notifies each one. Mention fewer, or write the names without '@'",
                    mentions.len(),
                    list(mentions.iter().map(|m| format!("@{m}"))),
                ),
            )
            .with_data(json!({ "limit": "max_mentions", "max": max, "found": mentions.len() })),
        }
    }
}

/// At most 12 items, then `... (N more)`.
fn list(items: impl ExactSizeIterator<Item = String>) -> String {
    let total = items.len();
    let mut shown: Vec<String> = items.take(12).collect();
    if total > shown.len() {
        shown.push(format!("... ({} more)", total - shown.len()));
    }
    shown.join(", ")
}

/// Check one text against `policy`: refused if any reading of it makes the
/// forge close or reopen something outside the writable set, or if it
/// refers to or mentions more than the limits allow; otherwise what it
/// refers to and mentions.
pub fn check(text: &str, policy: &Policy) -> Result<Findings, Refusal> {
    let mut closing: Vec<ActionRef> = Vec::new();
    let readings = readings(text);
    // Every issue path in any reading, with backslash escapes removed too:
    // a link destination the forge may find again after a keyword.
    let unescaped: Vec<String> = readings
        .iter()
        .filter(|r| r.text.contains('\\'))
        .map(|r| markdown::remove_backslash_escapes(&r.text))
        .collect();
    let dests = Destinations::of(
        &policy.finder,
        readings
            .iter()
            .map(|r| r.text.as_str())
            .chain(unescaped.iter().map(String::as_str)),
    );
    let mut counted = Counted::default();
    for reading in &readings {
        let stripped = markdown::strip(&reading.text);
        for (raw, view) in actions_in(&reading.text, &stripped, &dests, policy) {
            let action = ActionRef {
                action: policy.action_of(&raw.keyword),
                target: policy.reference(&raw.target),
                found: Found {
                    view,
                    entities_decoded: reading.entities_decoded,
                    unicode_folded: reading.unicode_folded,
                    excerpt: excerpt_of(&raw.excerpt),
                },
                keyword: raw.keyword,
            };
            if !policy.in_scope(&action.target) {
                return Err(Refusal::ActsOutside(action));
            }
            if !closing
                .iter()
                .any(|c| c.action == action.action && c.target == action.target)
            {
                closing.push(action);
            }
        }
        // References and mentions with the same finder, on the Markdown
        // view of every reading (code, which the forge does not read for
        // them, stays out: a backtrace's `#0 #1 #2` is no reference).
        counted.add(&stripped, policy);
    }
    let Counted {
        refs: foreign_refs,
        mentions,
    } = counted;
    if foreign_refs.len() > policy.rules.max_foreign_refs as usize {
        return Err(Refusal::TooManyForeignRefs {
            refs: foreign_refs,
            max: policy.rules.max_foreign_refs,
        });
    }
    if mentions.len() > policy.rules.max_mentions as usize {
        return Err(Refusal::TooManyMentions {
            mentions,
            max: policy.rules.max_mentions,
        });
    }
    Ok(Findings {
        foreign_refs,
        mentions,
        closing,
    })
}

/// One way of reading a text.
struct Reading {
    text: String,
    entities_decoded: bool,
    unicode_folded: bool,
}

/// The text as written first, then with entities decoded, then each of
/// those with Unicode folded (only the readings that differ).
fn readings(text: &str) -> Vec<Reading> {
    let mut all = vec![Reading {
        text: text.to_string(),
        entities_decoded: false,
        unicode_folded: false,
    }];
    // A hard line break (`\` or two spaces before a new line) joins its
    // lines with nothing between them in the forge's reading.
    let joined = markdown::join_hard_breaks(text);
    if joined != text {
        all.push(Reading {
            text: joined,
            entities_decoded: false,
            unicode_folded: false,
        });
    }
    for i in 0..all.len() {
        let decoded = fold::decode_entities(&all[i].text);
        if decoded != all[i].text {
            let text = decoded.into_owned();
            all.push(Reading {
                text,
                entities_decoded: true,
                unicode_folded: false,
            });
        }
    }
    for i in 0..all.len() {
        if let Some(folded) = fold::fold_unicode(&all[i].text) {
            let entities_decoded = all[i].entities_decoded;
            all.push(Reading {
                text: folded,
                entities_decoded,
                unicode_folded: true,
            });
        }
    }
    all
}

/// Every keyword + reference in one reading: in its Markdown view, before
/// its links to issues, and in the raw text.
fn actions_in(
    text: &str,
    stripped: &markdown::Stripped,
    dests: &Destinations,
    policy: &Policy,
) -> Vec<(RawAction, View)> {
    let finder = &policy.finder;
    let mut found: Vec<(RawAction, View)> = finder
        .actions(&stripped.text, dests)
        .into_iter()
        .map(|a| (a, View::Markdown))
        .collect();
    // An autolink the forge writes in place right after the text before it
    // (each distinct meeting once: repeated ones read the same).
    let mut joins: Vec<&str> = stripped.joins.iter().map(String::as_str).collect();
    joins.sort_unstable();
    joins.dedup();
    let empty = Destinations::default();
    for joined in joins {
        found.extend(
            finder
                .actions(joined, &empty)
                .into_iter()
                .map(|a| (a, View::Markdown)),
        );
    }
    // Links come in the order they start; the start of the line of each is
    // found by scanning forward once, not back from every link.
    let mut line_start = 0;
    let mut scanned = 0;
    for link in &stripped.links {
        let Some(target) = finder.link_reference(&link.destination) else {
            continue;
        };
        if link.start < scanned {
            // Out of order (not expected from the parser): look back.
            line_start = text[..link.start].rfind('\n').map_or(0, |i| i + 1);
        } else if let Some(i) = text[scanned..link.start].rfind('\n') {
            line_start = scanned + i + 1;
        }
        scanned = link.start;
        if let Some(keyword) = finder.keyword_at_end(&text[line_start..link.start]) {
            let action = RawAction {
                keyword: keyword.to_string(),
                target,
                excerpt: format!("{keyword} {}", link.destination),
            };
            found.push((action, View::Link));
        }
    }
    found.extend(
        finder
            .actions(text, dests)
            .into_iter()
            .map(|a| (a, View::Raw)),
    );
    found
}

/// Distinct foreign references and mentions over all readings.
#[derive(Default)]
struct Counted {
    refs: Vec<Reference>,
    mentions: Vec<String>,
}

impl Counted {
    fn add(&mut self, stripped: &markdown::Stripped, policy: &Policy) {
        let finder = &policy.finder;
        let links = stripped
            .links
            .iter()
            .filter_map(|l| finder.link_reference(&l.destination));
        for found in finder.references(&stripped.text).into_iter().chain(links) {
            let r = policy.reference(&found);
            if !policy.in_scope(&r) && !self.refs.contains(&r) {
                self.refs.push(r);
            }
        }
        for m in finder.mentions(&stripped.text) {
            if !self.mentions.iter().any(|x| x.eq_ignore_ascii_case(m)) {
                self.mentions.push(m.to_string());
            }
        }
    }
}

/// The excerpt for a message: control characters as spaces, at most 80 characters.
fn excerpt_of(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    const CORPUS: &str = include_str!("../../../tests/corpus/text_check.json");
    /// Cases judged by the forge's own code, with its verdict.
    const ORACLE_CORPUS: &str = include_str!("../../../tests/corpus/text_check_oracle.json");

    fn policy() -> &'static Policy {
        static POLICY: std::sync::LazyLock<Policy> = std::sync::LazyLock::new(|| {
            Policy::new("acme", "widgets", &[17, 18], &default_rules())
        });
        &POLICY
    }

    fn corpus(section: &str) -> Vec<(String, String, Option<String>)> {
        let files = [CORPUS, ORACLE_CORPUS]
            .map(|f| -> Value { serde_json::from_str(f).expect("the corpus is JSON") });
        files
            .iter()
            .flat_map(|all| all[section].as_array().into_iter().flatten())
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    e["text"].as_str().unwrap().to_string(),
                    e["referenced"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    #[test]
    fn the_corpus_gets_its_verdicts() {
        let policy = policy();
        for section in ["refused", "over_refused"] {
            for (name, text, referenced) in corpus(section) {
                match check(&text, policy) {
                    Err(Refusal::ActsOutside(a)) => {
                        assert_eq!(Some(a.target.to_string()), referenced, "{name}: {text:?}")
                    }
                    other => panic!("{section} '{name}' {text:?}: {other:?}"),
                }
            }
        }
        let harmless = corpus("harmless");
        let refused: Vec<_> = harmless
            .iter()
            .filter_map(|(name, text, _)| check(text, policy).err().map(|r| (name, r)))
            .collect();
        assert!(
            refused.is_empty(),
            "{} of {} harmless texts refused: {refused:?}",
            refused.len(),
            harmless.len()
        );
    }

    #[test]
    fn refusals_say_what_where_and_what_instead() {
        let policy = policy();
        let err = check("Fixes the crash.\n\n*see*closes #5", policy).unwrap_err();
        let e = err.to_rpc_error("comment to #17", policy);
        assert_eq!(e.code, ErrorCode::ScopeDenied);
        for part in [
            "comment to #17 denied",
            "'closes #5'",
            "keyword 'closes'",
            "once the Markdown is removed",
            "writable: #17, #18",
            "'see #5'",
        ] {
            assert!(e.message.contains(part), "{part}: {}", e.message);
        }
        assert_eq!(
            (&e.data["referenced"], &e.data["keyword"], &e.data["found"]),
            (&json!("#5"), &json!("closes"), &json!("markdown"))
        );
        let e = check("`clo\u{200b}ses #5`", policy)
            .unwrap_err()
            .to_rpc_error("x", policy);
        assert_eq!(e.data["found"], "raw+unicode", "{}", e.message);
        assert!(e.message.contains("invisible characters"), "{}", e.message);
        let e = check("&#99;loses #5", policy)
            .unwrap_err()
            .to_rpc_error("x", policy);
        assert_eq!(e.data["found"], "markdown", "{}", e.message);
        let e = check("`&#99;loses #5`", policy)
            .unwrap_err()
            .to_rpc_error("x", policy);
        assert_eq!(e.data["found"], "raw+entities", "{}", e.message);
        let e = check("resolves [x](/acme/widgets/issues/5)", policy)
            .unwrap_err()
            .to_rpc_error("x", policy);
        assert_eq!(e.data["found"], "link", "{}", e.message);
    }

    #[test]
    fn configured_keywords_add_to_the_defaults() {
        let mut rules = default_rules();
        rules.close_keywords = keyword_list(&DEFAULT_CLOSE_KEYWORDS, "Schliesst, behebt").unwrap();
        rules.reopen_keywords = keyword_list(&DEFAULT_REOPEN_KEYWORDS, "öffnet").unwrap();
        let policy = Policy::new("acme", "widgets", &[17], &rules);
        for (text, action) in [
            ("Schliesst #500", Action::Close),
            ("fixes #500", Action::Close),
            ("> behebt: #500", Action::Close),
            ("ÖFFNET #500", Action::Reopen),
        ] {
            match check(text, &policy) {
                Err(Refusal::ActsOutside(a)) => assert_eq!(a.action, action, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(
            check(
                "schliesst #500",
                &Policy::new("acme", "widgets", &[17], &default_rules())
            )
            .is_ok()
        );
        assert!(keyword_list(&[], "fix it").is_err());
        assert_eq!(keyword_list(&["fix"], " FIX ,, fix").unwrap(), ["fix"]);
    }

    #[test]
    fn foreign_references_and_mentions_are_counted_and_limited() {
        let policy = policy();
        let ten: String = (501..511).map(|n| format!("#{n} ")).collect();
        let found = check(&format!("{ten} #501 #17 acme/widgets#18 @a @A @b"), policy).unwrap();
        assert_eq!(
            found.foreign_refs.len(),
            10,
            "distinct, writable ones not counted"
        );
        assert_eq!(found.mentions, ["a", "b"]);
        let err = check(&format!("{ten} other/repo#1"), policy).unwrap_err();
        assert!(matches!(&err, Refusal::TooManyForeignRefs { refs, max: 10 } if refs.len() == 11));
        let e = err.to_rpc_error("description of #18", policy);
        assert_eq!(
            (e.code, &e.data["limit"]),
            (ErrorCode::LimitExceeded, &json!("max_foreign_refs"))
        );
        assert!(
            e.message.contains("max_foreign_refs") && e.message.contains("other/repo#1"),
            "{}",
            e.message
        );
        let err = check("@a @b @c @d @e @org/team", policy).unwrap_err();
        let e = err.to_rpc_error("comment to #17", policy);
        assert_eq!(e.data["limit"], "max_mentions");
        assert!(e.message.contains("@org/team"), "{}", e.message);
        // URLs and link destinations are references too; code is not read for them.
        let found = check(
            "[x](https://h/acme/widgets/issues/600) https://h/o/r/pulls/2 `#601` @x\n\n```\n#602 @y\n```",
            policy,
        )
        .unwrap();
        let refs: Vec<String> = found.foreign_refs.iter().map(ToString::to_string).collect();
        assert_eq!(refs, ["o/r#2", "#600"]);
        assert_eq!(found.mentions, ["x"]);
    }

    #[test]
    fn every_reference_form_counts_against_the_limit() {
        let policy = policy();
        for form in [
            |n: u32| format!("#{:0>30} ", n),
            |n: u32| format!("[x](http://'@/acme/widgets/issues/{n}) "),
            |n: u32| format!("<http://h//!{n})/b/issues/1> "),
            |n: u32| format!("[x](/o/r/pulls/+{n}) "),
        ] {
            let text: String = (501..512).map(form).collect();
            match check(&text, policy) {
                Err(Refusal::TooManyForeignRefs { refs, .. }) => {
                    assert!(refs.len() >= 11, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
            let ten: String = (501..511).map(form).collect();
            let found = check(&ten, policy).unwrap();
            assert!(
                found.foreign_refs.iter().any(|r| r.number == 501),
                "{found:?}"
            );
        }
    }

    /// Markdown that may surround a closing reference: (before, after).
    fn wrapper() -> impl Strategy<Value = (&'static str, &'static str)> {
        prop::sample::select(vec![
            ("", ""),
            ("> ", ""),
            (">", ""),
            ("*", "*"),
            ("**", "**"),
            ("_", "_"),
            ("~~", "~~"),
            ("`x`", ""),
            ("<b>", "</b>"),
            ("<div>\n", "\n</div>"),
            ("<!-- ", " -->"),
            ("- [ ] ", ""),
            ("- [x]", ""),
            ("1. ", ""),
            ("# ", ""),
            ("|", "|"),
            ("|a|\n|-|\n|", "|"),
            ("[x](http://e.example)", ""),
            ("![a](b.png)", ""),
            ("[", "](http://e.example)"),
            ("![", "](b.png)"),
            ("x[^1]\n\n[^1]: ", ""),
            ("<details>\n\n", "\n\n</details>"),
            ("```\n", "\n```"),
            ("    ", ""),
            ("`", "`"),
            ("Term\n: ", ""),
            ("text\\\n", ""),
        ])
    }

    /// A keyword as an attacker may spell it.
    fn keyword() -> impl Strategy<Value = String> {
        let word = prop::sample::select(
            DEFAULT_CLOSE_KEYWORDS
                .iter()
                .chain(&DEFAULT_REOPEN_KEYWORDS)
                .copied()
                .collect::<Vec<_>>(),
        );
        (word, any::<u32>(), 0u8..5).prop_map(|(w, bits, disguise)| {
            let mut s: String = w
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if bits >> i & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            let at = (bits as usize >> 16) % w.len().max(1) + 1;
            let at = at.min(s.len());
            match disguise {
                1 => s.insert(at, '\u{200b}'),
                2 => s = s.replacen('o', "\u{43e}", 1).replacen('e', "\u{435}", 1),
                3 => s = format!("&#{};{}", s.as_bytes()[0], &s[1..]),
                4 => s = s.replacen('s', "\u{17f}", 1),
                _ => {}
            }
            s
        })
    }

    /// A reference outside #17/#18 of acme/widgets, in any form.
    fn foreign_reference() -> impl Strategy<Value = String> {
        let n = (1u64..100_000).prop_filter("outside", |n| *n != 17 && *n != 18);
        (n, 0u8..9).prop_map(|(n, form)| match form {
            0 => format!("#{n}"),
            1 => format!("!{n}"),
            2 => format!("other/repo#{}", n),
            3 => format!("ACME/Widgets#{n}"),
            4 => format!("https://h.example/acme/widgets/issues/{n}"),
            5 => format!("[t](http://h.example/acme/widgets/pulls/{n})"),
            6 => format!("<http://h.example/o/r/issues/{n}>"),
            7 => format!("www.h.example/acme/widgets/issues/{n}"),
            _ => format!("&#35;{n}"),
        })
    }

    proptest! {
        /// However a closing reference outside the scope is wrapped in
        /// Markdown, spelled or surrounded, the text is refused.
        #[test]
        fn wrapped_closing_references_never_get_through(
            wrappers in prop::collection::vec(wrapper(), 1..4),
            keyword in keyword(),
            separator in prop::sample::select(vec![" ", ": ", ":  ", "  "]),
            reference in foreign_reference(),
            before in "([a-z .\n]{0,11}[ .\n])?",
            after in "([ .\n][a-z .\n]{0,11})?",
        ) {
            let mut text = format!("{keyword}{separator}{reference}");
            for (open, close) in &wrappers {
                text = format!("{open}{text}{close}");
            }
            let text = format!("{before}{text}{after}");
            let verdict = check(&text, policy());
            prop_assert!(
                matches!(verdict, Err(Refusal::ActsOutside(_))),
                "{:?} got through: {:?}", text, verdict
            );
        }
    }
}
