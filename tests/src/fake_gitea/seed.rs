//! The fake forge's data: the seed table every [`super::FakeGitea`] starts
//! with, and the mutable store of issues, pull requests and comments.
//!
//! Tests rely on this table: the numbers, which ones are pull requests,
//! which bodies are empty and which issues are closed are part of the
//! fake's documented behaviour. Change it only together with the tests.
//!
//! | #     | kind             | state          | body  | notes                                  |
//! |-------|------------------|----------------|-------|----------------------------------------|
//! | 1–16  | issue            | open           | text  | except the rows below                  |
//! | 3, 12 | issue            | open           | `""`  | empty body                             |
//! | 5, 10, 15 | issue        | closed         | text  | `closed_at` set                        |
//! | 17    | issue            | open           | text  | the assigned issue: assignee `forge-bot`, label `bug`, 3 comments |
//! | 18    | pull request     | open           | `""`  | the assigned PR, by `forge-bot`, `fix/empty-input` → `main`, 2 comments |
//! | 19    | pull request     | closed, merged | text  | by `bob`, `feature/colours` → `main`   |
//! | 20    | issue            | open           | text  |                                        |
//! | 500   | issue            | open           | text  | outside any write scope                |
//!
//! Branches: `main` (the default), `develop`, `fix/empty-input` (#18's head,
//! one commit `Handle empty input` + `Fixes #17`), `feature/colours` and
//! `agent/issue-17` ([`AGENT_BRANCH`], pushed, two clean commits, no PR).
//! Reviews: #18 has one `REQUEST_CHANGES` review by `alice` with one
//! inline comment. Tests add branches, pull requests (also from forks) and
//! reviews through [`super::FakeGitea`].
//!
//! All timestamps are in the server's zone, UTC+08:00, in whole seconds.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Timelike, Utc};

/// Owner (an organisation) of the one seeded repository.
pub const OWNER: &str = "acme";
/// Name of the one seeded repository.
pub const REPO: &str = "widgets";
/// The owner a [`super::Fault::Redirect`] points to (as if `acme` had been
/// renamed). The fake does not serve it: following the redirect gives 404.
pub const MOVED_OWNER: &str = "acme-moved";
/// The only token the fake accepts.
pub const TOKEN: &str = "fake-token-4b1d2c9e";
/// Login of the token's user (what `GET /user` returns).
pub const BOT_LOGIN: &str = "forge-bot";
/// The assigned issue.
pub const ASSIGNED_ISSUE: u64 = 17;
/// The assigned (open) pull request.
pub const ASSIGNED_PR: u64 = 18;
/// A merged, closed pull request.
pub const MERGED_PR: u64 = 19;
/// A plain issue outside the write scope.
pub const OUT_OF_SCOPE_ISSUE: u64 = 500;
/// Plain issues whose body is the empty string.
pub const EMPTY_BODY_ISSUES: &[u64] = &[3, 12];
/// Plain issues that are closed.
pub const CLOSED_ISSUES: &[u64] = &[5, 10, 15];
/// Database id of the repository.
pub const REPO_ID: i64 = 42;
/// Branches that exist in the repository at the start (a PR's `base` and
/// `head` must be branches).
pub const BRANCHES: &[&str] = &[
    "main",
    "develop",
    "fix/empty-input",
    "feature/colours",
    AGENT_BRANCH,
];
/// The repository's default branch.
pub const DEFAULT_BRANCH: &str = "main";
/// A pushed branch with no pull request yet: the agent's.
pub const AGENT_BRANCH: &str = "agent/issue-17";
/// `owner/repo` of the seeded repository.
pub const FULL_NAME: &str = "acme/widgets";
/// The server's time zone offset: not UTC, to catch clients that assume `Z`.
pub const SERVER_UTC_OFFSET_SECS: i32 = 8 * 3600;

/// A user (or the owning organisation) known to the fake.
#[derive(Clone, Copy, Debug)]
pub struct SeedUser {
    /// Database id.
    pub id: i64,
    /// Login name.
    pub login: &'static str,
    /// Display name.
    pub full_name: &'static str,
}

/// Everyone who appears in the seed.
pub const SEED_USERS: &[SeedUser] = &[
    SeedUser {
        id: 1,
        login: OWNER,
        full_name: "Acme Corporation",
    },
    SeedUser {
        id: 2,
        login: "alice",
        full_name: "Alice Liddell",
    },
    SeedUser {
        id: 3,
        login: "bob",
        full_name: "Bob Builder",
    },
    SeedUser {
        id: 7,
        login: BOT_LOGIN,
        full_name: "Forge Bot",
    },
];

/// The pull-request half of a seeded pull request.
#[derive(Clone, Copy, Debug)]
pub struct SeedPull {
    /// Head branch.
    pub head: &'static str,
    /// Base branch.
    pub base: &'static str,
    /// Whether it has been merged (then it is also closed).
    pub merged: bool,
    /// Whether it is a draft.
    pub draft: bool,
}

/// One row of the seed table.
#[derive(Clone, Copy, Debug)]
pub struct SeedIssue {
    /// The per-repository number (index).
    pub number: u64,
    /// Title.
    pub title: &'static str,
    /// Body; `""` where Gitea has no description.
    pub body: &'static str,
    /// Closed rather than open.
    pub closed: bool,
    /// Login of the author.
    pub author: &'static str,
    /// Logins of the assignees.
    pub assignees: &'static [&'static str],
    /// Label names (see [`SEED_LABELS`]).
    pub labels: &'static [&'static str],
    /// `Some` for a pull request.
    pub pull: Option<SeedPull>,
}

const fn issue(number: u64, title: &'static str, body: &'static str, closed: bool) -> SeedIssue {
    SeedIssue {
        number,
        title,
        body,
        closed,
        author: "alice",
        assignees: &[],
        labels: &[],
        pull: None,
    }
}

/// The seeded issues and pull requests, in number order.
pub const SEED_ISSUES: &[SeedIssue] = &[
    issue(
        1,
        "Widgets render upside down",
        "Open the demo page and look.",
        false,
    ),
    issue(
        2,
        "Document the widget API",
        "Every public widget needs docs.",
        false,
    ),
    issue(3, "Empty description", "", false),
    issue(4, "Slow start-up", "Start-up takes ten seconds.", false),
    issue(5, "Old crash in the parser", "Fixed long ago.", true),
    issue(6, "Support dark mode", "Please add a dark theme.", false),
    issue(
        7,
        "Typo in README",
        "\"widgest\" should be \"widgets\".",
        false,
    ),
    issue(
        8,
        "Flaky test in CI",
        "test_spin fails one run in ten.",
        false,
    ),
    issue(
        9,
        "Unicode titles ✓",
        "Titles with ü, 日本, and emoji 🎉.",
        false,
    ),
    issue(10, "Duplicate of #1", "Closing as duplicate.", true),
    issue(11, "Add a changelog", "Keep a CHANGELOG.md.", false),
    issue(12, "Another empty description", "", false),
    issue(
        13,
        "Markdown body",
        "# Heading\n\n- item\n- `code`\n\n```rust\nfn main() {}\n```",
        false,
    ),
    issue(14, "Widget sizes", "Sizes are off by one pixel.", false),
    issue(15, "Won't fix: rewrite in COBOL", "No.", true),
    issue(16, "Localisation", "Translate the UI.", false),
    SeedIssue {
        number: ASSIGNED_ISSUE,
        title: "Widgets crash on empty input",
        body: "Calling `render(\"\")` panics.\n\nExpected: an empty widget.",
        closed: false,
        author: "alice",
        assignees: &[BOT_LOGIN],
        labels: &["bug"],
        pull: None,
    },
    SeedIssue {
        number: ASSIGNED_PR,
        title: "Fix crash on empty input",
        body: "",
        closed: false,
        author: BOT_LOGIN,
        assignees: &[],
        labels: &["bug"],
        pull: Some(SeedPull {
            head: "fix/empty-input",
            base: "main",
            merged: false,
            draft: false,
        }),
    },
    SeedIssue {
        number: MERGED_PR,
        title: "Add colour themes",
        body: "Adds three colour themes.",
        closed: true,
        author: "bob",
        assignees: &[],
        labels: &["enhancement"],
        pull: Some(SeedPull {
            head: "feature/colours",
            base: "main",
            merged: true,
            draft: false,
        }),
    },
    issue(
        20,
        "Widgets leak memory",
        "RSS grows by 1 MiB per render.",
        false,
    ),
    SeedIssue {
        number: OUT_OF_SCOPE_ISSUE,
        title: "Unrelated: update the logo",
        body: "Nothing to do with the assigned work.",
        closed: false,
        author: "bob",
        assignees: &[],
        labels: &[],
        pull: None,
    },
];

/// A label: `(id, name, colour)`.
pub const SEED_LABELS: &[(i64, &str, &str)] = &[(1, "bug", "ee0701"), (2, "enhancement", "84b6eb")];

/// One seeded comment.
#[derive(Clone, Copy, Debug)]
pub struct SeedComment {
    /// Global comment id.
    pub id: u64,
    /// Number of the issue or PR it is on.
    pub issue: u64,
    /// Login of the author.
    pub author: &'static str,
    /// Text.
    pub body: &'static str,
    /// Edited after posting (`updated_at` later than `created_at`).
    pub edited: bool,
}

/// The seeded comments, oldest first. New comments get ids from
/// [`FIRST_NEW_COMMENT_ID`] on.
pub const SEED_COMMENTS: &[SeedComment] = &[
    SeedComment {
        id: 5001,
        issue: ASSIGNED_ISSUE,
        author: "alice",
        body: "Stack trace: `index out of bounds: the len is 0`.",
        edited: false,
    },
    SeedComment {
        id: 5002,
        issue: ASSIGNED_ISSUE,
        author: "bob",
        body: "Confirmed on main.",
        edited: true,
    },
    SeedComment {
        id: 5003,
        issue: ASSIGNED_ISSUE,
        author: BOT_LOGIN,
        body: "Looking into it.",
        edited: false,
    },
    SeedComment {
        id: 5004,
        issue: ASSIGNED_PR,
        author: "alice",
        body: "Please add a regression test.",
        edited: false,
    },
    SeedComment {
        id: 5005,
        issue: ASSIGNED_PR,
        author: BOT_LOGIN,
        body: "Added `renders_empty_input`.",
        edited: false,
    },
];

/// Inline review comments get ids above this one.
pub const FIRST_REVIEW_COMMENT_ID: u64 = 80_000;

/// The id the first comment created through the API gets.
pub const FIRST_NEW_COMMENT_ID: u64 = 6001;

/// A snapshot of an issue or pull request in the fake.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeIssue {
    /// The per-repository number.
    pub number: u64,
    /// Database id of the issue (a pull request has a different PR id).
    pub id: i64,
    /// Title.
    pub title: String,
    /// Body (`""` when empty).
    pub body: String,
    /// `"open"` or `"closed"`.
    pub state: String,
    /// Login of the author.
    pub author: String,
    /// Logins of the assignees.
    pub assignees: Vec<String>,
    /// Label names.
    pub labels: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<FixedOffset>,
    /// Last update.
    pub updated_at: DateTime<FixedOffset>,
    /// When it was closed, if it is.
    pub closed_at: Option<DateTime<FixedOffset>>,
    /// The pull-request part, for a pull request.
    pub pull: Option<FakePull>,
}

impl FakeIssue {
    /// Whether this is a pull request.
    pub fn is_pull_request(&self) -> bool {
        self.pull.is_some()
    }
}

/// The pull-request part of a [`FakeIssue`].
#[derive(Clone, Debug, PartialEq)]
pub struct FakePull {
    /// Database id of the pull request (not the issue id).
    pub id: i64,
    /// Head branch.
    pub head: String,
    /// Base branch.
    pub base: String,
    /// Merged.
    pub merged: bool,
    /// When it was merged.
    pub merged_at: Option<DateTime<FixedOffset>>,
    /// Draft.
    pub draft: bool,
    /// `owner/repo` of the head branch: this repository, or a fork.
    pub head_repo: String,
}

/// A commit of a branch (one the default branch does not have).
#[derive(Clone, Debug, PartialEq)]
pub struct FakeCommit {
    /// 40 hex digits.
    pub sha: String,
    /// The whole message.
    pub message: String,
    /// Author and commit time.
    pub at: DateTime<FixedOffset>,
}

/// A review of a pull request.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeReview {
    /// Forge-wide id.
    pub id: u64,
    /// The pull request's number.
    pub pull: u64,
    /// Login of the reviewer.
    pub author: String,
    /// Gitea's state: `APPROVED`, `REQUEST_CHANGES`, `COMMENT`, ...
    pub state: String,
    /// Summary text.
    pub body: String,
    /// Commit reviewed.
    pub commit: String,
    /// Submission time.
    pub submitted_at: DateTime<FixedOffset>,
    /// Inline comments.
    pub comments: Vec<FakeReviewComment>,
}

/// An inline comment of a review.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeReviewComment {
    /// Forge-wide id.
    pub id: u64,
    /// Login of the author.
    pub author: String,
    /// File.
    pub path: String,
    /// Line in the new file (positive), or in the old file (negative), as Gitea stores it.
    pub line: i64,
    /// Text.
    pub body: String,
    /// The diff hunk around the line.
    pub diff_hunk: String,
}

/// A snapshot of a comment in the fake.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeComment {
    /// Global id.
    pub id: u64,
    /// Number of the issue or PR it is on.
    pub issue: u64,
    /// Login of the author.
    pub author: String,
    /// Text.
    pub body: String,
    /// Creation time.
    pub created_at: DateTime<FixedOffset>,
    /// Last update.
    pub updated_at: DateTime<FixedOffset>,
}

/// The server's time zone.
pub fn server_offset() -> FixedOffset {
    FixedOffset::east_opt(SERVER_UTC_OFFSET_SECS).expect("a valid offset")
}

/// The current time in the server's zone, whole seconds.
pub(crate) fn now() -> DateTime<FixedOffset> {
    let now = Utc::now().with_timezone(&server_offset());
    now.with_nanosecond(0).unwrap_or(now)
}

/// A wall-clock time in the server's zone.
pub(crate) fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<FixedOffset> {
    server_offset()
        .with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("a valid seed time")
}

/// The time everything in the seed is relative to: 2024-05-01T12:34:56+08:00.
fn epoch() -> DateTime<FixedOffset> {
    at(2024, 5, 1, 12, 34, 56)
}

/// A stable fake commit id for the `k`-th commit of `branch`.
pub(crate) fn commit_sha(branch: &str, k: u32) -> String {
    let mut h: u64 = 0x8422_2325_cbf2_9ce4;
    let mut out = String::new();
    for round in 0u8..3 {
        for b in branch.bytes().chain(k.to_le_bytes()).chain([round]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(40);
    out
}

/// The `k`-th commit of `branch`.
pub(crate) fn commit(branch: &str, k: u32, message: &str, at: DateTime<FixedOffset>) -> FakeCommit {
    FakeCommit {
        sha: commit_sha(branch, k),
        message: message.to_owned(),
        at,
    }
}

/// Looks up a seeded user.
pub(crate) fn user(login: &str) -> Option<&'static SeedUser> {
    SEED_USERS.iter().find(|u| u.login == login)
}

/// The seeded collaborators of the repository (the owner organisation is
/// not one: Gitea's check looks at the collaboration table only).
pub const SEED_COLLABORATORS: &[&str] = &["alice", "bob", BOT_LOGIN];

/// The fake's mutable data.
#[derive(Debug)]
pub(crate) struct Store {
    pub issues: BTreeMap<u64, FakeIssue>,
    /// All comments in creation order (which is id order).
    pub comments: Vec<FakeComment>,
    next_comment_id: u64,
    /// Branch name → its commits the default branch lacks, oldest first.
    pub branches: BTreeMap<String, Vec<FakeCommit>>,
    /// Every review, in creation order.
    pub reviews: Vec<FakeReview>,
    next_review_id: u64,
    next_review_comment: u64,
    /// Logins that are collaborators of the repository (lower case).
    pub collaborators: BTreeSet<String>,
}

impl Store {
    /// The store as described by the seed table.
    pub(crate) fn seeded() -> Store {
        let epoch = epoch();
        let issues = SEED_ISSUES
            .iter()
            .map(|seed| {
                let hours = i64::try_from(seed.number).unwrap_or(0);
                let created_at = epoch + Duration::hours(hours);
                let closed_at = seed.closed.then(|| created_at + Duration::hours(2));
                let updated_at = closed_at.unwrap_or(created_at + Duration::minutes(30));
                let pull = seed.pull.map(|p| FakePull {
                    id: 700 + hours,
                    head: p.head.to_owned(),
                    base: p.base.to_owned(),
                    merged: p.merged,
                    merged_at: if p.merged { closed_at } else { None },
                    draft: p.draft,
                    head_repo: FULL_NAME.to_owned(),
                });
                let issue = FakeIssue {
                    number: seed.number,
                    id: 3000 + hours,
                    title: seed.title.to_owned(),
                    body: seed.body.to_owned(),
                    state: if seed.closed { "closed" } else { "open" }.to_owned(),
                    author: seed.author.to_owned(),
                    assignees: seed.assignees.iter().map(|s| (*s).to_owned()).collect(),
                    labels: seed.labels.iter().map(|s| (*s).to_owned()).collect(),
                    created_at,
                    updated_at,
                    closed_at,
                    pull,
                };
                (seed.number, issue)
            })
            .collect();
        let comments_start = epoch + Duration::days(30);
        let comments = SEED_COMMENTS
            .iter()
            .zip(0..)
            .map(|(seed, k)| {
                let created_at = comments_start + Duration::minutes(10 * k);
                let updated_at = if seed.edited {
                    created_at + Duration::hours(1)
                } else {
                    created_at
                };
                FakeComment {
                    id: seed.id,
                    issue: seed.issue,
                    author: seed.author.to_owned(),
                    body: seed.body.to_owned(),
                    created_at,
                    updated_at,
                }
            })
            .collect();
        let mut branches: BTreeMap<String, Vec<FakeCommit>> = BRANCHES
            .iter()
            .map(|b| ((*b).to_owned(), Vec::new()))
            .collect();
        let at = epoch + Duration::days(20);
        branches.insert(
            "fix/empty-input".into(),
            vec![commit(
                "fix/empty-input",
                0,
                "Handle empty input\n\nFixes #17",
                at,
            )],
        );
        branches.insert(
            AGENT_BRANCH.into(),
            vec![
                commit(
                    AGENT_BRANCH,
                    0,
                    "Render an empty widget for empty input",
                    at,
                ),
                commit(AGENT_BRANCH, 1, "Test render(\"\")", at),
            ],
        );
        let mut store = Store {
            issues,
            comments,
            next_comment_id: FIRST_NEW_COMMENT_ID,
            branches,
            reviews: Vec::new(),
            next_review_id: 900,
            next_review_comment: 0,
            collaborators: SEED_COLLABORATORS.iter().map(|c| (*c).to_owned()).collect(),
        };
        store.add_review(
            ASSIGNED_PR,
            "alice",
            "REQUEST_CHANGES",
            "Please handle the whitespace-only case too.",
            &[("src/render.rs", 12, "What about \"  \"?")],
        );
        store
    }

    /// The next issue number: after the highest one (PRs share the sequence).
    pub(crate) fn next_number(&self) -> u64 {
        self.issues.keys().next_back().map_or(1, |n| n + 1)
    }

    /// Adds a pull request (as if opened outside the sidecar) and returns its number.
    pub(crate) fn add_pull(
        &mut self,
        head: &str,
        head_repo: &str,
        base: &str,
        author: &str,
        title: &str,
        body: &str,
    ) -> u64 {
        let number = self.next_number();
        let now = now();
        let hours = i64::try_from(number).unwrap_or(0);
        self.issues.insert(
            number,
            FakeIssue {
                number,
                id: 3000 + hours,
                title: title.to_owned(),
                body: body.to_owned(),
                state: "open".into(),
                author: author.to_owned(),
                assignees: vec![],
                labels: vec![],
                created_at: now,
                updated_at: now,
                closed_at: None,
                pull: Some(FakePull {
                    id: 700 + hours,
                    head: head.to_owned(),
                    base: base.to_owned(),
                    merged: false,
                    merged_at: None,
                    draft: false,
                    head_repo: head_repo.to_owned(),
                }),
            },
        );
        number
    }

    /// Adds a review with inline comments `(path, line, body)` to pull
    /// request `pull`; returns its id.
    pub(crate) fn add_review(
        &mut self,
        pull: u64,
        author: &str,
        state: &str,
        body: &str,
        inline: &[(&str, i64, &str)],
    ) -> u64 {
        let id = self.next_review_id;
        self.next_review_id += 1;
        let comments = inline
            .iter()
            .map(|(path, line, text)| {
                // Ids from their own range, so plain comments keep theirs.
                self.next_review_comment += 1;
                let cid = FIRST_REVIEW_COMMENT_ID + self.next_review_comment;
                FakeReviewComment {
                    id: cid,
                    author: author.to_owned(),
                    path: (*path).to_owned(),
                    line: *line,
                    body: (*text).to_owned(),
                    diff_hunk: format!("@@ -{0},3 +{0},4 @@\n fn render(s: &str) {{\n+    if s.is_empty() {{ return Widget::empty(); }}", line.abs()),
                }
            })
            .collect();
        let head = self
            .issues
            .get(&pull)
            .and_then(|i| i.pull.as_ref())
            .map(|p| p.head.clone())
            .unwrap_or_default();
        let commit = self
            .branches
            .get(&head)
            .and_then(|c| c.last())
            .map_or_else(|| commit_sha(&head, 99), |c| c.sha.clone());
        self.reviews.push(FakeReview {
            id,
            pull,
            author: author.to_owned(),
            state: state.to_owned(),
            body: body.to_owned(),
            commit,
            submitted_at: epoch()
                + Duration::days(40)
                + Duration::minutes(i64::try_from(id).unwrap_or(0)),
            comments,
        });
        id
    }

    /// Whether `login` is known to the fake: a seeded user or the author
    /// of anything in the store (Gitea answers 422 for an unknown user).
    pub(crate) fn knows_user(&self, login: &str) -> bool {
        let is = |author: &str| author.eq_ignore_ascii_case(login);
        SEED_USERS.iter().any(|u| is(u.login))
            || self.collaborators.iter().any(|c| is(c))
            || self.issues.values().any(|i| is(&i.author))
            || self.comments.iter().any(|c| is(&c.author))
            || self.reviews.iter().any(|r| is(&r.author))
    }

    /// The comments on issue `number`, oldest first.
    pub(crate) fn comments_of(&self, number: u64) -> Vec<&FakeComment> {
        let mut list: Vec<&FakeComment> =
            self.comments.iter().filter(|c| c.issue == number).collect();
        list.sort_by_key(|c| (c.created_at, c.id));
        list
    }

    /// Adds a comment by `author` to issue `number` (which must exist).
    pub(crate) fn add_comment(&mut self, number: u64, author: &str, body: &str) -> FakeComment {
        let now = now();
        let comment = FakeComment {
            id: self.next_comment_id,
            issue: number,
            author: author.to_owned(),
            body: body.to_owned(),
            created_at: now,
            updated_at: now,
        };
        self.next_comment_id += 1;
        self.comments.push(comment.clone());
        if let Some(issue) = self.issues.get_mut(&number) {
            issue.updated_at = now;
        }
        comment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_table_matches_its_documentation() {
        let store = Store::seeded();
        let numbers: Vec<u64> = store.issues.keys().copied().collect();
        let mut expected: Vec<u64> = (1..=20).collect();
        expected.push(OUT_OF_SCOPE_ISSUE);
        assert_eq!(numbers, expected);
        let pulls: Vec<u64> = store
            .issues
            .values()
            .filter(|i| i.is_pull_request())
            .map(|i| i.number)
            .collect();
        assert_eq!(pulls, [ASSIGNED_PR, MERGED_PR]);
        for n in EMPTY_BODY_ISSUES {
            assert_eq!(store.issues[n].body, "");
        }
        assert_eq!(store.issues[&ASSIGNED_PR].body, "");
        for n in CLOSED_ISSUES {
            assert_eq!(store.issues[n].state, "closed");
            assert!(store.issues[n].closed_at.is_some());
        }
        assert_eq!(store.issues[&ASSIGNED_ISSUE].assignees, [BOT_LOGIN]);
        assert_eq!(store.comments_of(ASSIGNED_ISSUE).len(), 3);
        assert_eq!(store.comments_of(ASSIGNED_PR).len(), 2);
        assert!(
            store.issues[&MERGED_PR]
                .pull
                .as_ref()
                .is_some_and(|p| p.merged)
        );
        for seed in SEED_ISSUES {
            assert!(
                user(seed.author).is_some(),
                "unknown author of #{}",
                seed.number
            );
        }
    }

    #[test]
    fn new_comments_get_fresh_ids_after_the_seed() {
        let mut store = Store::seeded();
        let first = store.add_comment(ASSIGNED_ISSUE, BOT_LOGIN, "one");
        let second = store.add_comment(ASSIGNED_ISSUE, BOT_LOGIN, "two");
        assert_eq!(first.id, FIRST_NEW_COMMENT_ID);
        assert_eq!(second.id, FIRST_NEW_COMMENT_ID + 1);
        let ids: Vec<u64> = store
            .comments_of(ASSIGNED_ISSUE)
            .iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, [5001, 5002, 5003, first.id, second.id]);
    }
}
