//! [`ReadGuard`]: what the agent reads, made safe to read.
//!
//! Writes are guarded by the scope; reads are where a prompt injection
//! comes in, in text anyone who can comment wrote. Every text a read
//! returns passes through here before the agent sees it:
//!
//! * withheld when its author is not trusted (`FORGE_READ_TRUST=
//!   collaborators`: not the owner, not a collaborator, not in
//!   `FORGE_TRUSTED_USERS`; a check that fails withholds too), replaced by
//!   a one-line placeholder naming the author, the time and why;
//! * cleaned of hidden characters ([`clean`]: tag characters, bidi
//!   controls, invisible characters) per `FORGE_READ_INVISIBLE`;
//! * cut at its size cap (`FORGE_MAX_FIELD_BYTES`, 1 KiB for titles,
//!   branch names, labels and paths) with a marker giving its full size.
//!
//! Each change is a [`Notice`] in the result, and the totals are the
//! [`ReadReport`] of the call's `op` event. Lists come a page at a time
//! ([`ReadGuard::comment_page`], [`ReadGuard::review_page`]), each page at
//! most `FORGE_MAX_READ_BYTES` of JSON, with the total and a sealed
//! [`cursor`] for the rest.

pub mod clean;
pub mod cursor;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use forge_protocol::echo::{cut, quote};
use forge_protocol::{
    Comment, CommentPage, Issue, IssueNumber, Notice, NoticeAction, NoticeKind, Order, PageParams,
    PullRequest, ReadReport, Review, ReviewPage, RpcError,
};
use serde::Serialize;

use crate::forge::{Forge, ForgeError};
use clean::{Cleaned, Invisible};
use cursor::{List, Position, Sealer};

/// Cap on short texts: titles, labels, branch names, file paths.
pub const SHORT_FIELD_BYTES: usize = 1024;
/// Room kept in an answer for the page's own fields.
const PAGE_OVERHEAD: usize = 512;
/// Most distinct authors named in an `op` event's `withheld_from`.
const MAX_WITHHELD_NAMED: usize = 16;
/// Most answers kept in the collaborator cache.
const MAX_CACHED: usize = 4096;

/// Whose texts the agent reads (`FORGE_READ_TRUST`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Trust {
    /// Everyone's (the default).
    #[default]
    All,
    /// Only the owner's, the collaborators' and `FORGE_TRUSTED_USERS`'.
    Collaborators,
}

impl Trust {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::All => "all",
            Trust::Collaborators => "collaborators",
        }
    }

    /// The setting from its value.
    pub fn parse(s: &str) -> Option<Trust> {
        match s.trim().to_ascii_lowercase().as_str() {
            "all" => Some(Trust::All),
            "collaborators" => Some(Trust::Collaborators),
            _ => None,
        }
    }
}

/// The read settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadConfig {
    /// Hidden characters: strip, mark or keep.
    pub invisible: Invisible,
    /// Whose texts are shown.
    pub trust: Trust,
    /// Logins trusted besides the owner and the collaborators (lower case).
    pub trusted_users: Vec<String>,
    /// Most bytes of JSON in one answer of a list.
    pub max_read_bytes: usize,
    /// Most bytes of one long text (a body, a comment, a diff hunk).
    pub max_field_bytes: usize,
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            invisible: Invisible::Strip,
            trust: Trust::All,
            trusted_users: Vec::new(),
            max_read_bytes: 64 * 1024,
            max_field_bytes: 32 * 1024,
        }
    }
}

/// Whether an author's text may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Trusted,
    /// Not the owner, a collaborator or a trusted user.
    Untrusted,
    /// The check failed: withheld to be safe. The reason, short.
    Unknown(String),
}

/// What the guard asks of the forge: whether a login is a collaborator of
/// the repository. Every [`Forge`] answers it; a test can answer it alone.
pub trait Collaborators {
    /// Whether `login` is the repository's collaborator.
    fn is_collaborator(&self, login: &str) -> Result<bool, ForgeError>;
}

impl<F: Forge + ?Sized> Collaborators for F {
    fn is_collaborator(&self, login: &str) -> Result<bool, ForgeError> {
        Forge::is_collaborator(self, login)
    }
}

/// The read guard of one session.
pub struct ReadGuard {
    config: ReadConfig,
    owner: String,
    sealer: Sealer,
    /// Collaborator answers of this session (lower-case login → yes/no).
    collaborators: Mutex<HashMap<String, bool>>,
}

/// What one guarded read found and did.
#[derive(Default)]
struct Pass {
    notices: Vec<Notice>,
    hidden: u64,
    cut: u64,
    withheld: u64,
    withheld_from: BTreeSet<String>,
    failures: u64,
}

impl Pass {
    fn append(&mut self, other: Pass) {
        self.notices.extend(other.notices);
        self.hidden += other.hidden;
        self.cut += other.cut;
        self.withheld += other.withheld;
        self.withheld_from.extend(other.withheld_from);
        self.failures += other.failures;
    }

    fn report(&self, mode: Invisible) -> ReadReport {
        let mut from: Vec<String> = self
            .withheld_from
            .iter()
            .take(MAX_WITHHELD_NAMED)
            .map(|u| quote(u).into_owned())
            .collect();
        if self.withheld_from.len() > MAX_WITHHELD_NAMED {
            from.push(format!(
                "(and {} more)",
                self.withheld_from.len() - MAX_WITHHELD_NAMED
            ));
        }
        ReadReport {
            hidden_chars: self.hidden,
            hidden_action: match mode {
                Invisible::Strip => "stripped",
                Invisible::Mark => "marked",
                Invisible::Keep => "kept",
            }
            .into(),
            cut: self.cut,
            withheld: self.withheld,
            withheld_from: from,
            trust_check_failures: self.failures,
        }
    }
}

/// A guarded read's report, `None` when nothing was found or changed.
pub type Report = Option<ReadReport>;

impl ReadGuard {
    /// The guard for the repository of `owner`, with a fresh cursor key.
    pub fn new(config: ReadConfig, owner: &str) -> ReadGuard {
        ReadGuard {
            config,
            owner: owner.to_ascii_lowercase(),
            sealer: Sealer::random(),
            collaborators: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ReadConfig {
        &self.config
    }

    fn verdict<C: Collaborators + ?Sized>(&self, forge: &C, login: &str) -> Verdict {
        if self.config.trust == Trust::All {
            return Verdict::Trusted;
        }
        let lower = login.to_ascii_lowercase();
        if lower.is_empty() {
            return Verdict::Untrusted;
        }
        if lower == self.owner || self.config.trusted_users.contains(&lower) {
            return Verdict::Trusted;
        }
        let cached = self
            .collaborators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&lower)
            .copied();
        let answer = match cached {
            Some(answer) => answer,
            None => match forge.is_collaborator(login) {
                Ok(answer) => {
                    let mut cache = self.collaborators.lock().unwrap_or_else(|p| p.into_inner());
                    if cache.len() < MAX_CACHED {
                        cache.insert(lower, answer);
                    }
                    answer
                }
                Err(e) => {
                    tracing::warn!(user = %quote(login), cause = %e, "collaborator check failed; the text is withheld");
                    return Verdict::Unknown(cut(&e.to_string(), 160).into_owned());
                }
            },
        };
        if answer {
            Verdict::Trusted
        } else {
            Verdict::Untrusted
        }
    }

    /// The placeholder for a withheld text by `author` at `when`, or `None`
    /// when the author is trusted. Records the notice under `field`.
    fn withhold<C: Collaborators + ?Sized>(
        &self,
        pass: &mut Pass,
        forge: &C,
        author: &str,
        when: &str,
        field: &str,
    ) -> Option<String> {
        let why = match self.verdict(forge, author) {
            Verdict::Trusted => return None,
            Verdict::Untrusted if author.is_empty() => {
                "its author's account no longer exists, so it cannot be checked".to_string()
            }
            Verdict::Untrusted => format!(
                "@{} is not the repository owner, a collaborator or a trusted user \
                 (FORGE_READ_TRUST=collaborators)",
                quote(author)
            ),
            Verdict::Unknown(reason) => {
                pass.failures += 1;
                format!(
                    "whether @{} is a collaborator could not be checked ({reason}), so it is withheld to be safe; \
                     try again later",
                    quote(author)
                )
            }
        };
        pass.withheld += 1;
        pass.withheld_from.insert(author.to_string());
        pass.notices.push(Notice {
            field: field.to_string(),
            what: NoticeKind::UntrustedAuthor,
            count: 1,
            action: NoticeAction::Withheld,
        });
        let author = if author.is_empty() {
            "a deleted account".to_string()
        } else {
            format!("@{}", quote(author))
        };
        Some(format!(
            "[withheld by the forge sidecar: written by {author} at {}; {why}. Ask a human to read it on the forge if it matters.]",
            quote(when)
        ))
    }

    /// Clean and cap one text in place, recording notices under `prefix` + `name`.
    fn text(&self, pass: &mut Pass, prefix: &str, name: &str, value: &mut String, cap: usize) {
        let Cleaned {
            text,
            found,
            cut_from,
        } = clean::clean(value, self.config.invisible, cap);
        if found == [0; 3] && cut_from.is_none() {
            return;
        }
        let field = format!("{prefix}{name}");
        let action = match self.config.invisible {
            Invisible::Strip => NoticeAction::Stripped,
            Invisible::Mark => NoticeAction::Marked,
            Invisible::Keep => NoticeAction::Kept,
        };
        for (kind, count) in [
            NoticeKind::TagCharacters,
            NoticeKind::BidiControls,
            NoticeKind::InvisibleCharacters,
        ]
        .into_iter()
        .zip(found)
        {
            if count > 0 {
                pass.hidden += count;
                pass.notices.push(Notice {
                    field: field.clone(),
                    what: kind,
                    count,
                    action,
                });
            }
        }
        if let Some(full) = cut_from {
            pass.cut += 1;
            pass.notices.push(Notice {
                field,
                what: NoticeKind::TooLong,
                count: full as u64,
                action: NoticeAction::Cut,
            });
        }
        if let Some(text) = text {
            *value = text;
        }
    }

    fn long(&self) -> usize {
        self.config.max_field_bytes
    }

    fn finish(&self, pass: &Pass) -> Report {
        let report = pass.report(self.config.invisible);
        (!report.is_empty()).then_some(report)
    }

    /// Guard an issue (title and body by its author; labels).
    pub fn issue<C: Collaborators + ?Sized>(&self, forge: &C, issue: &mut Issue) -> Report {
        let mut pass = Pass::default();
        match self.withhold(&mut pass, forge, &issue.user, &issue.created_at, "body") {
            Some(placeholder) => {
                issue.body = placeholder;
                pass.notices.push(Notice {
                    field: "title".into(),
                    what: NoticeKind::UntrustedAuthor,
                    count: 1,
                    action: NoticeAction::Withheld,
                });
                pass.withheld += 1;
                issue.title = "[withheld: see the body]".into();
            }
            None => {
                self.text(&mut pass, "", "title", &mut issue.title, SHORT_FIELD_BYTES);
                self.text(&mut pass, "", "body", &mut issue.body, self.long());
            }
        }
        for (i, label) in issue.labels.iter_mut().enumerate() {
            self.text(
                &mut pass,
                "",
                &format!("labels[{i}]"),
                label,
                SHORT_FIELD_BYTES,
            );
        }
        let report = self.finish(&pass);
        issue.notices = pass.notices;
        report
    }

    /// Guard a pull request (title and body by its author; branch names).
    pub fn pr<C: Collaborators + ?Sized>(&self, forge: &C, pr: &mut PullRequest) -> Report {
        let mut pass = Pass::default();
        match self.withhold(&mut pass, forge, &pr.user, &pr.created_at, "body") {
            Some(placeholder) => {
                pr.body = placeholder;
                pass.notices.push(Notice {
                    field: "title".into(),
                    what: NoticeKind::UntrustedAuthor,
                    count: 1,
                    action: NoticeAction::Withheld,
                });
                pass.withheld += 1;
                pr.title = "[withheld: see the body]".into();
            }
            None => {
                self.text(&mut pass, "", "title", &mut pr.title, SHORT_FIELD_BYTES);
                self.text(&mut pass, "", "body", &mut pr.body, self.long());
            }
        }
        self.text(&mut pass, "", "head", &mut pr.head, SHORT_FIELD_BYTES);
        self.text(&mut pass, "", "base", &mut pr.base, SHORT_FIELD_BYTES);
        let report = self.finish(&pass);
        pr.notices = pass.notices;
        report
    }

    /// Clean the warnings of `signal_done` (they quote commit messages).
    pub fn warnings(&self, warnings: &mut [String]) -> Report {
        let mut pass = Pass::default();
        for (i, w) in warnings.iter_mut().enumerate() {
            self.text(&mut pass, "", &format!("warnings[{i}]"), w, self.long());
        }
        self.finish(&pass)
    }

    fn comment<C: Collaborators + ?Sized>(&self, forge: &C, c: &mut Comment) -> Pass {
        let mut pass = Pass::default();
        let prefix = format!("comments[id={}].", c.id);
        let field = format!("{prefix}body");
        match self.withhold(&mut pass, forge, &c.user, &c.created_at, &field) {
            Some(placeholder) => c.body = placeholder,
            None => self.text(&mut pass, &prefix, "body", &mut c.body, self.long()),
        }
        pass
    }

    fn review<C: Collaborators + ?Sized>(&self, forge: &C, r: &mut Review) -> Pass {
        let mut pass = Pass::default();
        let prefix = format!("reviews[id={}].", r.id);
        let field = format!("{prefix}body");
        match self.withhold(&mut pass, forge, &r.user, &r.submitted_at, &field) {
            Some(placeholder) => r.body = placeholder,
            None => self.text(&mut pass, &prefix, "body", &mut r.body, self.long()),
        }
        for c in &mut r.comments {
            let inner = format!("{prefix}comments[id={}].", c.id);
            let field = format!("{inner}body");
            match self.withhold(&mut pass, forge, &c.user, &c.created_at, &field) {
                Some(placeholder) => c.body = placeholder,
                None => self.text(&mut pass, &inner, "body", &mut c.body, self.long()),
            }
            self.text(&mut pass, &inner, "path", &mut c.path, SHORT_FIELD_BYTES);
            self.text(
                &mut pass,
                &inner,
                "diff_hunk",
                &mut c.diff_hunk,
                self.long(),
            );
        }
        pass
    }

    /// Open the cursor of a page call, if any: where the page starts.
    pub fn position(&self, list: List, params: &PageParams) -> Result<Option<Position>, RpcError> {
        params
            .cursor
            .as_ref()
            .map(|c| self.sealer.open(c, list, params.number, params.order))
            .transpose()
    }

    /// One page of `all` (the comments of `number`, oldest first).
    pub fn comment_page<C: Collaborators + ?Sized>(
        &self,
        forge: &C,
        number: IssueNumber,
        all: Vec<Comment>,
        params: &PageParams,
        start: Option<Position>,
    ) -> (CommentPage, Report) {
        let page = self.page(
            forge,
            List::Comments,
            number,
            all,
            params,
            start,
            |c| c.id,
            |guard, forge, c| guard.comment(forge, c),
        );
        let report = self.finish(&page.pass);
        (
            CommentPage {
                comments: page.items,
                total: page.total,
                remaining: page.remaining,
                order: page.order,
                next_cursor: page.next_cursor,
                notices: page.pass.notices,
            },
            report,
        )
    }

    /// One page of `all` (the reviews of `number`, oldest first).
    pub fn review_page<C: Collaborators + ?Sized>(
        &self,
        forge: &C,
        number: IssueNumber,
        all: Vec<Review>,
        params: &PageParams,
        start: Option<Position>,
    ) -> (ReviewPage, Report) {
        let page = self.page(
            forge,
            List::Reviews,
            number,
            all,
            params,
            start,
            |r| r.id,
            |guard, forge, r| guard.review(forge, r),
        );
        let report = self.finish(&page.pass);
        (
            ReviewPage {
                reviews: page.items,
                total: page.total,
                remaining: page.remaining,
                order: page.order,
                next_cursor: page.next_cursor,
                notices: page.pass.notices,
            },
            report,
        )
    }

    /// The page of `all` starting at `start`: items guarded one by one and
    /// taken while the count is under the limit and the JSON (with the
    /// notices) under the answer's budget. The first item of a page is
    /// always taken; a review too large alone loses its last inline
    /// comments, with a notice.
    #[allow(clippy::too_many_arguments)]
    fn page<T: Serialize + Shrink + Clone, C: Collaborators + ?Sized>(
        &self,
        forge: &C,
        list: List,
        number: IssueNumber,
        mut all: Vec<T>,
        params: &PageParams,
        start: Option<Position>,
        id: impl Fn(&T) -> u64,
        guard_one: impl Fn(&Self, &C, &mut T) -> Pass,
    ) -> Paged<T> {
        let order = start.map(|p| p.order).or(params.order).unwrap_or_default();
        if order == Order::NewestFirst {
            all.reverse();
        }
        let total = all.len();
        let first = match start {
            None => 0,
            Some(p) => match all.iter().position(|x| id(x) == p.after) {
                Some(i) => i + 1,
                // The item is gone: start where it would have been.
                None => all
                    .iter()
                    .position(|x| match order {
                        Order::OldestFirst => id(x) > p.after,
                        Order::NewestFirst => id(x) < p.after,
                    })
                    .unwrap_or(total),
            },
        };
        let limit = params.limit.map_or(usize::MAX, |l| l.get() as usize);
        let budget = self.config.max_read_bytes.saturating_sub(PAGE_OVERHEAD);
        let mut pass = Pass::default();
        let mut items = Vec::new();
        let mut used = 0usize;
        let mut next = first;
        for mut item in all.into_iter().skip(first) {
            if items.len() >= limit {
                break;
            }
            // What the item was before guarding, for one that may have to
            // leave parts out (then it is guarded again, as it is sent).
            let original = (item.parts() > 0).then(|| item.clone());
            let mut one = guard_one(self, forge, &mut item);
            let notices_len = |p: &Pass| p.notices.iter().map(json_len).sum::<usize>();
            let mut size = json_len(&item) + notices_len(&one);
            if used + size > budget {
                if !items.is_empty() {
                    break;
                }
                if let Some(mut original) = original {
                    let room = budget.saturating_sub(notices_len(&one) + 256);
                    let all_parts = item.parts();
                    while item.parts() > 0 && json_len(&item) > room {
                        item.keep(item.parts() - 1);
                    }
                    original.keep(item.parts());
                    item = original;
                    one = guard_one(self, forge, &mut item);
                    let left = all_parts - item.parts();
                    if left > 0 {
                        one.notices.push(Notice {
                            field: format!("{}[id={}].{}", list.noun(), id(&item), T::PARTS),
                            what: NoticeKind::TooLargeForAnswer,
                            count: left as u64,
                            action: NoticeAction::LeftOut,
                        });
                    }
                }
                size = json_len(&item) + notices_len(&one);
            }
            used += size;
            pass.append(one);
            items.push(item);
            next += 1;
        }
        let remaining = total - next;
        let next_cursor = match (remaining, items.last()) {
            (0, _) | (_, None) => None,
            (_, Some(last)) => Some(self.sealer.seal(list, number, order, id(last))),
        };
        Paged {
            items,
            total: total as u64,
            remaining: remaining as u64,
            order,
            next_cursor,
            pass,
        }
    }
}

/// A page before it becomes a result.
struct Paged<T> {
    items: Vec<T>,
    total: u64,
    remaining: u64,
    order: Order,
    next_cursor: Option<String>,
    pass: Pass,
}

/// An item that can leave trailing parts out to fit an answer.
trait Shrink {
    /// The name of the parts, as a field.
    const PARTS: &'static str;
    /// How many parts it has.
    fn parts(&self) -> usize;
    /// Keep the first `n` parts.
    fn keep(&mut self, n: usize);
}

impl Shrink for Comment {
    // A comment's one long text is capped below the answer's budget.
    const PARTS: &'static str = "";
    fn parts(&self) -> usize {
        0
    }
    fn keep(&mut self, _: usize) {}
}

impl Shrink for Review {
    const PARTS: &'static str = "comments";
    fn parts(&self) -> usize {
        self.comments.len()
    }
    fn keep(&mut self, n: usize) {
        self.comments.truncate(n);
    }
}

fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

#[cfg(test)]
mod tests;
