//! [`MemoryForge`]: a seeded in-memory forge, so the sidecar runs with no Gitea.
//!
//! Seed: issues #1..#20 with #17 the usual assigned issue, #18 and #19 pull
//! requests for it, and #500 an unrelated issue; a few comments on #17 and
//! #18. Writes change the in-memory state only and are lost at exit.

use std::collections::BTreeMap;
use std::sync::Mutex;

use forge_protocol::{Comment, Issue, IssueNumber, PullRequest, State, Text, Updated};

use super::{Forge, ForgeError};

const CREATED: &str = "2026-11-01T09:00:00+00:00";

struct Item {
    issue: Issue,
    pr: Option<(String, String)>,
    comments: Vec<Comment>,
}

struct Store {
    items: BTreeMap<u64, Item>,
    next_comment_id: u64,
    clock: u64,
}

/// An in-memory repository with sample issues, PRs and comments.
pub struct MemoryForge {
    owner: String,
    repo: String,
    store: Mutex<Store>,
}

impl MemoryForge {
    /// A forge for `owner/repo` holding the sample data.
    pub fn seeded(owner: &str, repo: &str) -> MemoryForge {
        let mut items = BTreeMap::new();
        let mut add = |n: u64, title: &str, body: &str, pr: Option<(&str, &str)>| {
            let url = format!(
                "http://forge.invalid/{owner}/{repo}/{}/{n}",
                if pr.is_some() { "pulls" } else { "issues" }
            );
            let issue = Issue {
                number: n,
                title: title.into(),
                body: body.into(),
                state: if n.is_multiple_of(7) {
                    State::Closed
                } else {
                    State::Open
                },
                user: if pr.is_some() {
                    "agent-bot".into()
                } else {
                    "alice".into()
                },
                labels: if n == 17 { vec!["bug".into()] } else { vec![] },
                assignees: if n == 17 {
                    vec!["agent-bot".into()]
                } else {
                    vec![]
                },
                is_pull_request: pr.is_some(),
                url,
                created_at: CREATED.into(),
                updated_at: CREATED.into(),
            };
            let pr = pr.map(|(h, b)| (h.to_string(), b.to_string()));
            items.insert(
                n,
                Item {
                    issue,
                    pr,
                    comments: vec![],
                },
            );
        };
        for n in 1..=20 {
            match n {
                17 => add(
                    17,
                    "Widget export drops the last row",
                    "Exporting 10 widgets writes 9 rows.",
                    None,
                ),
                18 => add(
                    18,
                    "Fix off-by-one in widget export",
                    "Fixes the export loop (for #17).",
                    Some(("fix-export", "main")),
                ),
                19 => add(
                    19,
                    "Add export regression test",
                    "",
                    Some(("export-test", "main")),
                ),
                n => add(
                    n,
                    &format!("Sample issue {n}"),
                    if n.is_multiple_of(5) {
                        ""
                    } else {
                        "Sample text."
                    },
                    None,
                ),
            }
        }
        add(
            500,
            "Unrelated: rotate the signing keys",
            "Not part of this task.",
            None,
        );
        let mut store = Store {
            items,
            next_comment_id: 1000,
            clock: 0,
        };
        for (n, user, body) in [
            (17, "alice", "Seen on every export since 2.3."),
            (17, "bob", "Probably the loop bound in export.rs."),
            (18, "alice", "Please add a test."),
        ] {
            store.comment(n, user, body);
        }
        MemoryForge {
            owner: owner.into(),
            repo: repo.into(),
            store: Mutex::new(store),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_found(&self, n: IssueNumber) -> ForgeError {
        ForgeError::NotFound(format!(
            "#{} does not exist in {}/{}; check the number",
            n.get(),
            self.owner,
            self.repo
        ))
    }
}

impl Store {
    fn now(&mut self) -> String {
        self.clock += 1;
        format!(
            "2026-11-02T{:02}:{:02}:{:02}+00:00",
            (self.clock / 3600) % 24,
            (self.clock / 60) % 60,
            self.clock % 60
        )
    }

    fn comment(&mut self, n: u64, user: &str, body: &str) -> Option<Comment> {
        let ts = self.now();
        let id = self.next_comment_id;
        let item = self.items.get_mut(&n)?;
        self.next_comment_id += 1;
        let c = Comment {
            id,
            user: user.into(),
            body: body.into(),
            created_at: ts.clone(),
            updated_at: ts,
        };
        item.comments.push(c.clone());
        Some(c)
    }
}

fn pr_of(item: &Item) -> Option<PullRequest> {
    let (head, base) = item.pr.clone()?;
    let i = &item.issue;
    Some(PullRequest {
        number: i.number,
        title: i.title.clone(),
        body: i.body.clone(),
        state: i.state,
        merged: false,
        draft: i.number == 19,
        head,
        base,
        user: i.user.clone(),
        url: i.url.clone(),
        created_at: i.created_at.clone(),
        updated_at: i.updated_at.clone(),
    })
}

impl Forge for MemoryForge {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn api_base(&self) -> Option<&str> {
        None
    }

    fn blocks(&self) -> bool {
        false
    }

    fn preflight(&self, issue: IssueNumber) -> Result<String, ForgeError> {
        self.read_issue(issue).map(|_| "agent-bot".to_string())
    }

    fn read_issue(&self, n: IssueNumber) -> Result<Issue, ForgeError> {
        self.store()
            .items
            .get(&n.get())
            .map(|i| i.issue.clone())
            .ok_or_else(|| self.not_found(n))
    }

    fn read_pr(&self, n: IssueNumber) -> Result<PullRequest, ForgeError> {
        let store = self.store();
        let item = store.items.get(&n.get()).ok_or_else(|| self.not_found(n))?;
        pr_of(item).ok_or_else(|| {
            ForgeError::NotFound(format!(
                "#{} is an issue, not a pull request; read it with read_issue",
                n.get()
            ))
        })
    }

    fn read_comments(&self, n: IssueNumber) -> Result<Vec<Comment>, ForgeError> {
        self.store()
            .items
            .get(&n.get())
            .map(|i| i.comments.clone())
            .ok_or_else(|| self.not_found(n))
    }

    fn post_comment(&self, n: IssueNumber, body: &Text) -> Result<Comment, ForgeError> {
        self.store()
            .comment(n.get(), "agent-bot", body.as_str())
            .ok_or_else(|| self.not_found(n))
    }

    fn update_description(&self, n: IssueNumber, body: &Text) -> Result<Updated, ForgeError> {
        let mut store = self.store();
        let ts = store.now();
        let item = store
            .items
            .get_mut(&n.get())
            .ok_or_else(|| self.not_found(n))?;
        item.issue.body = body.as_str().to_string();
        item.issue.updated_at = ts;
        Ok(match pr_of(item) {
            Some(pr) => Updated::PullRequest(pr),
            None => Updated::Issue(item.issue.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u64) -> IssueNumber {
        IssueNumber::new(v).unwrap()
    }

    #[test]
    fn seed_has_issue_prs_and_comments() {
        let f = MemoryForge::seeded("acme", "widgets");
        assert!(!f.read_issue(n(17)).unwrap().is_pull_request);
        assert!(f.read_issue(n(18)).unwrap().is_pull_request);
        assert_eq!(f.read_pr(n(18)).unwrap().head, "fix-export");
        assert_eq!(f.read_comments(n(17)).unwrap().len(), 2);
        assert!(f.read_issue(n(500)).is_ok());
    }

    #[test]
    fn pr_read_of_an_issue_says_so() {
        let f = MemoryForge::seeded("acme", "widgets");
        let err = f.read_pr(n(17)).unwrap_err();
        assert!(
            err.to_string().contains("is an issue, not a pull request"),
            "{err}"
        );
        assert!(matches!(
            f.read_issue(n(9999)),
            Err(ForgeError::NotFound(_))
        ));
    }

    #[test]
    fn writes_are_visible() {
        let f = MemoryForge::seeded("acme", "widgets");
        let c = f.post_comment(n(17), &Text::new("on it").unwrap()).unwrap();
        assert_eq!(f.read_comments(n(17)).unwrap().last(), Some(&c));
        let updated = f
            .update_description(n(18), &Text::new("new text").unwrap())
            .unwrap();
        assert!(matches!(updated, Updated::PullRequest(ref pr) if pr.body == "new text"));
    }
}
