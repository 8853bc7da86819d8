//! [`MemoryForge`]: a seeded in-memory forge, so the sidecar runs with no Gitea.
//!
//! Seed: issues #1..#20 with #17 the usual assigned issue, #18 and #19 pull
//! requests for it, and #500 an unrelated issue; a few comments on #17 and
//! #18, two reviews with inline comments on #18; branches `main` (the
//! default), `fix-export`, `export-test`, `wip/cleanup` (a commit that says
//! `Closes #500`) and `agent/issue-17` (pushed, no PR yet); alice, bob
//! and agent-bot are the collaborators. Writes change the in-memory state only and are lost at exit; a new
//! pull request takes the next number after the highest issue, as on Gitea.

use std::collections::BTreeMap;
use std::sync::Mutex;

use forge_protocol::{
    Comment, Issue, IssueNumber, PullRequest, Review, ReviewComment, ReviewState, State, Text,
    Updated,
};

use super::{CommitInfo, Forge, ForgeError};

/// The repository's default branch.
const DEFAULT_BRANCH: &str = "main";

/// The seed's collaborators (everyone who writes in it).
const COLLABORATORS: [&str; 3] = ["alice", "bob", "agent-bot"];

const CREATED: &str = "2026-11-01T09:00:00+00:00";

struct Item {
    issue: Issue,
    pr: Option<(String, String)>,
    comments: Vec<Comment>,
}

struct Store {
    items: BTreeMap<u64, Item>,
    /// Branch name → its commits not on the default branch, oldest first.
    branches: BTreeMap<String, Vec<CommitInfo>>,
    reviews: BTreeMap<u64, Vec<Review>>,
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
                notices: vec![],
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
        let commit = |sha: &str, message: &str| CommitInfo {
            sha: sha.repeat(40 / sha.len()),
            message: message.into(),
        };
        let branches = BTreeMap::from([
            (DEFAULT_BRANCH.to_string(), vec![]),
            (
                "fix-export".to_string(),
                vec![commit(
                    "1a2b3c4d",
                    "Fix off-by-one in the export loop\n\nFixes #17",
                )],
            ),
            (
                "export-test".to_string(),
                vec![commit("5e6f7a8b", "Add an export regression test")],
            ),
            (
                "wip/cleanup".to_string(),
                vec![commit("7f8e9d0c", "Tidy up the exporter\n\nCloses #500")],
            ),
            (
                "agent/issue-17".to_string(),
                vec![
                    commit(
                        "9c0d1e2f",
                        "Export the last row\n\nThe loop bound was one short.",
                    ),
                    commit("3a4b5c6d", "Test that 10 widgets export 10 rows"),
                ],
            ),
        ]);
        let inline = |id: u64, user: &str, line: u64, body: &str| ReviewComment {
            id,
            user: user.into(),
            path: "src/export.rs".into(),
            line: Some(line),
            old_line: None,
            diff_hunk: format!(
                "@@ -{line},2 +{line},2 @@\n-    for i in 0..rows.len() - 1 {{\n+    for i in 0..rows.len() {{"
            ),
            body: body.into(),
            commit: "1a2b3c4d".repeat(5),
            created_at: "2026-11-01T10:00:00+00:00".into(),
        };
        let reviews = BTreeMap::from([(
            18,
            vec![
                Review {
                    id: 300,
                    user: "alice".into(),
                    state: ReviewState::RequestChanges,
                    body: "The fix looks right; please add a test.".into(),
                    commit: "1a2b3c4d".repeat(5),
                    stale: false,
                    dismissed: false,
                    submitted_at: "2026-11-01T10:00:00+00:00".into(),
                    comments: vec![inline(
                        3001,
                        "alice",
                        42,
                        "Cover the empty export here too.",
                    )],
                },
                Review {
                    id: 301,
                    user: "bob".into(),
                    state: ReviewState::Comment,
                    body: String::new(),
                    commit: "1a2b3c4d".repeat(5),
                    stale: false,
                    dismissed: false,
                    submitted_at: "2026-11-01T11:00:00+00:00".into(),
                    comments: vec![inline(3002, "bob", 43, "Nit: name the bound.")],
                },
            ],
        )]);
        let mut store = Store {
            items,
            branches,
            reviews,
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

    fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
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

fn pr_of(item: &Item, repo: &str) -> Option<PullRequest> {
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
        head_repo: Some(repo.to_string()),
        base,
        user: i.user.clone(),
        url: i.url.clone(),
        created_at: i.created_at.clone(),
        updated_at: i.updated_at.clone(),
        notices: vec![],
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
        pr_of(item, &self.full_name()).ok_or_else(|| {
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
        Ok(
            match pr_of(item, &format!("{}/{}", self.owner, self.repo)) {
                Some(pr) => Updated::PullRequest(pr),
                None => Updated::Issue(item.issue.clone()),
            },
        )
    }

    fn read_reviews(&self, n: IssueNumber) -> Result<Vec<Review>, ForgeError> {
        self.read_reviews_of(n)
    }

    fn default_branch(&self) -> Result<String, ForgeError> {
        Ok(DEFAULT_BRANCH.into())
    }

    fn find_pr(&self, base: &str, head: &str) -> Result<Option<PullRequest>, ForgeError> {
        let store = self.store();
        // The latest PR for the pair, as Gitea's by-base-and-head lookup.
        Ok(store
            .items
            .values()
            .rev()
            .find(|i| i.pr.as_ref().is_some_and(|(h, b)| h == head && b == base))
            .and_then(|i| pr_of(i, &self.full_name())))
    }

    fn open_pr(
        &self,
        head: &str,
        base: &str,
        title: &Text,
        body: &Text,
    ) -> Result<PullRequest, ForgeError> {
        self.open(head, base, title, body)
    }

    fn branch_commits(&self, base: &str, head: &str) -> Result<Vec<CommitInfo>, ForgeError> {
        let store = self.store();
        for branch in [base, head] {
            if !store.branches.contains_key(branch) {
                return Err(self.no_branch(branch));
            }
        }
        Ok(store.branches[head].clone())
    }

    fn pr_commits(&self, n: IssueNumber) -> Result<Vec<CommitInfo>, ForgeError> {
        let pr = self.read_pr(n)?;
        Ok(self
            .store()
            .branches
            .get(&pr.head)
            .cloned()
            .unwrap_or_default())
    }

    fn is_collaborator(&self, login: &str) -> Result<bool, ForgeError> {
        Ok(COLLABORATORS.iter().any(|c| c.eq_ignore_ascii_case(login)))
    }
}

impl MemoryForge {
    fn no_branch(&self, branch: &str) -> ForgeError {
        ForgeError::NotFound(format!(
            "branch '{branch}' does not exist in {}",
            self.full_name()
        ))
    }
}

impl MemoryForge {
    fn read_reviews_of(&self, n: IssueNumber) -> Result<Vec<Review>, ForgeError> {
        self.read_pr(n)?;
        Ok(self
            .store()
            .reviews
            .get(&n.get())
            .cloned()
            .unwrap_or_default())
    }

    fn open(
        &self,
        head: &str,
        base: &str,
        title: &Text,
        body: &Text,
    ) -> Result<PullRequest, ForgeError> {
        let mut store = self.store();
        for branch in [head, base] {
            if !store.branches.contains_key(branch) {
                return Err(self.no_branch(branch));
            }
        }
        if head == base {
            return Err(ForgeError::Rejected {
                status: 422,
                message: "head and base are the same branch".into(),
            });
        }
        let open = store.items.values().find(|i| {
            i.issue.state == State::Open
                && i.pr.as_ref().is_some_and(|(h, b)| h == head && b == base)
        });
        if let Some(existing) = open {
            return Err(ForgeError::Rejected {
                status: 409,
                message: format!(
                    "pull request already exists for these targets [issue_id: {}, head_branch: {head}, base_branch: {base}]",
                    existing.issue.number
                ),
            });
        }
        let number = store.items.keys().next_back().map_or(1, |n| n + 1);
        let ts = store.now();
        let issue = Issue {
            number,
            title: title.as_str().into(),
            body: body.as_str().into(),
            state: State::Open,
            user: "agent-bot".into(),
            labels: vec![],
            assignees: vec![],
            is_pull_request: true,
            url: format!("http://forge.invalid/{}/pulls/{number}", self.full_name()),
            created_at: ts.clone(),
            updated_at: ts,
            notices: vec![],
        };
        let item = Item {
            issue,
            pr: Some((head.into(), base.into())),
            comments: vec![],
        };
        let pr = pr_of(&item, &self.full_name()).expect("a pull request item");
        store.items.insert(number, item);
        Ok(pr)
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
    fn opened_pr_takes_the_next_number_and_duplicates_conflict() {
        let f = MemoryForge::seeded("acme", "widgets");
        let t = Text::new("Export the last row").unwrap();
        let pr = f.open_pr("agent/issue-17", "main", &t, &t).unwrap();
        assert_eq!(pr.number, 501);
        assert_eq!(pr.head_repo.as_deref(), Some("acme/widgets"));
        assert_eq!(
            f.find_pr("main", "agent/issue-17")
                .unwrap()
                .map(|p| p.number),
            Some(501)
        );
        let again = f.open_pr("agent/issue-17", "main", &t, &t).unwrap_err();
        assert!(
            matches!(again, ForgeError::Rejected { status: 409, .. }),
            "{again}"
        );
        let missing = f.open_pr("agent/nope", "main", &t, &t).unwrap_err();
        assert!(matches!(missing, ForgeError::NotFound(_)), "{missing}");
        assert_eq!(f.pr_commits(n(501)).unwrap().len(), 2);
        assert_eq!(f.read_reviews(n(18)).unwrap().len(), 2);
        assert!(f.read_reviews(n(17)).is_err(), "an issue has no reviews");
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
