//! The JSON the fake sends: Gitea 1.25.4's response shapes (`Issue`,
//! `PullRequest`, `Comment`, `User`, `Repository`, `Label`, `PRBranchInfo`
//! and the error bodies), with Gitea's real null-versus-missing behaviour
//! (Gitea 1.25): pointers are `null`, never left out;
//! `omitempty` fields are left out when empty; timestamps are RFC 3339 in
//! whole seconds with the server's offset (`+08:00`).

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde_json::{Value, json};

use super::seed::{
    self, FakeComment, FakeCommit, FakeIssue, FakeReview, FakeReviewComment, OWNER, REPO, REPO_ID,
    SEED_LABELS, Store,
};

/// The server's URLs, which depend on the port it got.
#[derive(Clone, Debug)]
pub(crate) struct Urls {
    /// `http://127.0.0.1:PORT` (Gitea's ROOT_URL, without the trailing slash).
    pub web: String,
}

impl Urls {
    pub(crate) fn api(&self) -> String {
        format!("{}/api/v1", self.web)
    }

    fn repo_web(&self) -> String {
        format!("{}/{OWNER}/{REPO}", self.web)
    }

    fn repo_api(&self) -> String {
        format!("{}/repos/{OWNER}/{REPO}", self.api())
    }

    /// The web page of issue or PR `issue`.
    fn issue_web(&self, issue: &FakeIssue) -> String {
        let kind = if issue.is_pull_request() {
            "pulls"
        } else {
            "issues"
        };
        format!("{}/{kind}/{}", self.repo_web(), issue.number)
    }

    /// What Gitea puts in an error body's `url`: the instance's API docs.
    fn swagger(&self) -> String {
        format!("{}/api/swagger", self.web)
    }
}

/// RFC 3339, whole seconds, with the offset (never `Z` for +08:00).
pub(crate) fn ts(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn opt_ts(t: Option<&DateTime<FixedOffset>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(ts(t)))
}

/// `{"message": …, "url": …}` (`APIError`).
pub(crate) fn error(urls: &Urls, message: &str) -> Value {
    json!({ "message": message, "url": urls.swagger() })
}

/// Gitea's 404 body (`APIErrorNotFound`).
pub(crate) fn not_found(urls: &Urls) -> Value {
    json!({ "message": "not found", "url": urls.swagger(), "errors": null })
}

/// A `User`. Unknown logins render as a placeholder user, id 0.
pub(crate) fn user(urls: &Urls, login: &str) -> Value {
    let (id, full_name) = seed::user(login).map_or((0, ""), |u| (u.id, u.full_name));
    let created = seed::at(2023, 1, 2, 3, 4, 5);
    json!({
        "id": id,
        "login": login,
        "login_name": "",
        "source_id": 0,
        "full_name": full_name,
        "email": format!("{login}@noreply.localhost"),
        "avatar_url": format!("{}/avatars/{id:032x}", urls.web),
        "html_url": format!("{}/{login}", urls.web),
        "language": "",
        "is_admin": false,
        "last_login": ts(&created),
        "created": ts(&created),
        "restricted": false,
        "active": true,
        "prohibit_login": false,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0,
        // Not in the spec: Gitea's `User.MarshalJSON` adds it.
        "username": login,
    })
}

/// A `Label`.
fn label(urls: &Urls, name: &str) -> Value {
    let (id, color) = SEED_LABELS
        .iter()
        .find(|(_, n, _)| *n == name)
        .map_or((0, "000000"), |(id, _, c)| (*id, *c));
    json!({
        "id": id,
        "name": name,
        "exclusive": false,
        "is_archived": false,
        "color": color,
        "description": "",
        "url": format!("{}/labels/{id}", urls.repo_api()),
    })
}

/// The `Repository`, as the token's user sees it.
pub(crate) fn repository(urls: &Urls, store: &Store) -> Value {
    let open_issues = store
        .issues
        .values()
        .filter(|i| !i.is_pull_request() && i.state == "open")
        .count();
    let open_pulls = store
        .issues
        .values()
        .filter(|i| i.is_pull_request() && i.state == "open")
        .count();
    let created = seed::at(2024, 1, 15, 9, 0, 0);
    let host = urls.web.trim_start_matches("http://");
    let mut repo = json!({
        "id": REPO_ID,
        "owner": user(urls, OWNER),
        "name": REPO,
        "full_name": format!("{OWNER}/{REPO}"),
        "description": "Widgets for everyone",
        "empty": false,
        "private": false,
        "fork": false,
        "template": false,
        "mirror": false,
        "size": 1234,
        "language": "Rust",
        "languages_url": format!("{}/languages", urls.repo_api()),
        "html_url": urls.repo_web(),
        "url": urls.repo_api(),
        "link": "",
        "ssh_url": format!("git@{}:{OWNER}/{REPO}.git", host.split(':').next().unwrap_or(host)),
        "clone_url": format!("{}.git", urls.repo_web()),
        "original_url": "",
        "website": "",
        "stars_count": 3,
        "forks_count": 0,
        "watchers_count": 2,
        "open_issues_count": open_issues,
        "open_pr_counter": open_pulls,
        "release_counter": 0,
        "default_branch": "main",
        "archived": false,
        "created_at": ts(&created),
        "updated_at": ts(&created),
        // Not archived: Gitea renders the zero Unix time in its own zone.
        "archived_at": "1970-01-01T08:00:00+08:00",
        "permissions": { "admin": false, "push": true, "pull": true },
    });
    // Two halves: one `json!` this large exceeds the macro recursion limit.
    let settings = json!({
        "has_issues": true,
        "internal_tracker": {
            "enable_time_tracker": true,
            "allow_only_contributors_to_track_time": true,
            "enable_issue_dependencies": true,
        },
        "has_wiki": false,
        "has_pull_requests": true,
        "has_projects": false,
        "projects_mode": "all",
        "has_releases": true,
        "has_packages": false,
        "has_actions": false,
        "ignore_whitespace_conflicts": false,
        "allow_merge_commits": true,
        "allow_rebase": true,
        "allow_rebase_explicit": true,
        "allow_squash_merge": true,
        "allow_fast_forward_only_merge": true,
        "allow_rebase_update": true,
        "allow_manual_merge": false,
        "autodetect_manual_merge": false,
        "default_delete_branch_after_merge": false,
        "default_merge_style": "merge",
        "default_allow_maintainer_edit": false,
        "avatar_url": "",
        "internal": false,
        "mirror_interval": "",
        "object_format_name": "sha1",
        // Go's zero time.Time: never mirrored. Note the `Z`.
        "mirror_updated": "0001-01-01T00:00:00Z",
        "topics": [],
        "licenses": ["MIT"],
    });
    if let (Value::Object(fields), Value::Object(more)) = (&mut repo, settings) {
        fields.extend(more);
    }
    repo
}

fn users(urls: &Urls, logins: &[String]) -> Vec<Value> {
    logins.iter().map(|l| user(urls, l)).collect()
}

fn comment_count(store: &Store, number: u64) -> usize {
    store.comments.iter().filter(|c| c.issue == number).count()
}

/// An `Issue` (also for a pull request's number).
pub(crate) fn issue(urls: &Urls, store: &Store, issue: &FakeIssue) -> Value {
    let assignees = if issue.assignees.is_empty() {
        Value::Null // a nil slice in Go
    } else {
        Value::Array(users(urls, &issue.assignees))
    };
    let assignee = issue
        .assignees
        .first()
        .map_or(Value::Null, |l| user(urls, l));
    let pull_request = issue.pull.as_ref().map_or(Value::Null, |p| {
        json!({
            "merged": p.merged,
            "merged_at": opt_ts(p.merged_at.as_ref()),
            "draft": p.draft,
            "html_url": urls.issue_web(issue),
        })
    });
    json!({
        "id": issue.id,
        "url": format!("{}/issues/{}", urls.repo_api(), issue.number),
        "html_url": urls.issue_web(issue),
        "number": issue.number,
        "user": user(urls, &issue.author),
        "original_author": "",
        "original_author_id": 0,
        "title": issue.title,
        "body": issue.body,
        "ref": "",
        "assets": [],
        "labels": issue.labels.iter().map(|l| label(urls, l)).collect::<Vec<_>>(),
        "milestone": null,
        "assignee": assignee,
        "assignees": assignees,
        "state": issue.state,
        "is_locked": false,
        "comments": comment_count(store, issue.number),
        "created_at": ts(&issue.created_at),
        "updated_at": ts(&issue.updated_at),
        "closed_at": opt_ts(issue.closed_at.as_ref()),
        "due_date": null,
        "time_estimate": 0,
        "pull_request": pull_request,
        "repository": {
            "id": REPO_ID,
            "name": REPO,
            "owner": OWNER,
            "full_name": format!("{OWNER}/{REPO}"),
        },
        "pin_order": 0,
    })
}

/// A fake but stable 40-hex-digit commit id.
fn sha(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::new();
    for round in 0u8..3 {
        for b in seed.bytes().chain([round]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(40);
    out
}

fn branch(urls: &Urls, store: &Store, name: &str, repo: &str) -> Value {
    if repo.eq_ignore_ascii_case(seed::FULL_NAME) {
        return json!({
            "label": name,
            "ref": name,
            "sha": sha(name),
            "repo_id": REPO_ID,
            "repo": repository(urls, store),
        });
    }
    // A fork: its own repository, owned by someone else.
    let mut fork = repository(urls, store);
    let (owner, name_part) = repo.split_once('/').unwrap_or((repo, REPO));
    if let Value::Object(fields) = &mut fork {
        fields.insert("id".into(), json!(REPO_ID + 1000));
        fields.insert("full_name".into(), json!(repo));
        fields.insert("name".into(), json!(name_part));
        fields.insert("fork".into(), json!(true));
        fields.insert("owner".into(), user(urls, owner));
    }
    json!({
        "label": format!("{owner}:{name}"),
        "ref": name,
        "sha": sha(name),
        "repo_id": REPO_ID + 1000,
        "repo": fork,
    })
}

/// A `PullRequest`. `issue.pull` must be `Some`.
pub(crate) fn pull_request(urls: &Urls, store: &Store, issue: &FakeIssue) -> Value {
    let Some(pull) = issue.pull.as_ref() else {
        return Value::Null;
    };
    let web = urls.issue_web(issue);
    let merged_by = if pull.merged {
        user(urls, "alice")
    } else {
        Value::Null
    };
    let merge_commit_sha = if pull.merged {
        Value::String(sha(&format!("merge-{}", issue.number)))
    } else {
        Value::Null
    };
    let mut value = json!({
        "id": pull.id,
        // The web URL, not an API URL.
        "url": web,
        "number": issue.number,
        "user": user(urls, &issue.author),
        "title": issue.title,
        "body": issue.body,
        "labels": issue.labels.iter().map(|l| label(urls, l)).collect::<Vec<_>>(),
        "milestone": null,
        "assignee": issue.assignees.first().map_or(Value::Null, |l| user(urls, l)),
        // Never null here, unlike on an Issue.
        "assignees": users(urls, &issue.assignees),
        "requested_reviewers": [],
        "requested_reviewers_teams": [],
        "state": issue.state,
        "draft": pull.draft,
        "is_locked": false,
        "comments": comment_count(store, issue.number),
        "html_url": web,
        "diff_url": format!("{web}.diff"),
        "patch_url": format!("{web}.patch"),
        "mergeable": !pull.merged && issue.state == "open",
        "merged": pull.merged,
        "merged_at": opt_ts(pull.merged_at.as_ref()),
        "merge_commit_sha": merge_commit_sha,
        "merged_by": merged_by,
        "allow_maintainer_edit": false,
        "base": branch(urls, store, &pull.base, seed::FULL_NAME),
        "head": branch(urls, store, &pull.head, &pull.head_repo),
        "merge_base": sha(&format!("base-{}", issue.number)),
        "due_date": null,
        "created_at": ts(&issue.created_at),
        "updated_at": ts(&issue.updated_at),
        "closed_at": opt_ts(issue.closed_at.as_ref()),
        "pin_order": 0,
    });
    // `review_comments` is omitempty (always 0 here, so always absent);
    // `additions`/`deletions`/`changed_files` are omitted when unknown,
    // which the fake makes the case for merged pull requests.
    if !pull.merged
        && let Value::Object(fields) = &mut value
    {
        fields.insert("additions".into(), json!(12));
        fields.insert("deletions".into(), json!(3));
        fields.insert("changed_files".into(), json!(2));
    }
    value
}

/// A `PullReview` of pull request `issue`.
pub(crate) fn review(urls: &Urls, issue: &FakeIssue, review: &FakeReview) -> Value {
    let web = urls.issue_web(issue);
    json!({
        "id": review.id,
        "user": user(urls, &review.author),
        "team": null,
        "state": review.state,
        "body": review.body,
        "commit_id": review.commit,
        "stale": false,
        "official": review.state == "APPROVED" || review.state == "REQUEST_CHANGES",
        "dismissed": false,
        "comments_count": review.comments.len(),
        "submitted_at": ts(&review.submitted_at),
        "updated_at": ts(&review.submitted_at),
        "html_url": format!("{web}#issuecomment-{}", review.id),
        "pull_request_url": web,
    })
}

/// A `PullReviewComment` of `review`.
pub(crate) fn review_comment(
    urls: &Urls,
    issue: &FakeIssue,
    review: &FakeReview,
    c: &FakeReviewComment,
) -> Value {
    let web = urls.issue_web(issue);
    // Gitea: a positive line is on the new side (`position`), a negative
    // one on the old side (`original_position`); the other is 0.
    let (position, original) = if c.line >= 0 {
        (c.line.unsigned_abs(), 0)
    } else {
        (0, c.line.unsigned_abs())
    };
    json!({
        "id": c.id,
        "body": c.body,
        "user": user(urls, &c.author),
        "resolver": null,
        "pull_request_review_id": review.id,
        "created_at": ts(&review.submitted_at),
        "updated_at": ts(&review.submitted_at),
        "path": c.path,
        "commit_id": review.commit,
        "original_commit_id": review.commit,
        "diff_hunk": c.diff_hunk,
        "position": position,
        "original_position": original,
        "html_url": format!("{web}/files#issuecomment-{}", c.id),
        "pull_request_url": web,
    })
}

/// A `Commit` (as listed for a pull request or a compare; no files, no stats).
pub(crate) fn commit(urls: &Urls, c: &FakeCommit) -> Value {
    let api = format!("{}/git/commits/{}", urls.repo_api(), c.sha);
    let person =
        json!({ "name": "Forge Bot", "email": "forge-bot@example.com", "date": ts(&c.at) });
    json!({
        "url": api,
        "sha": c.sha,
        "created": ts(&c.at),
        "html_url": format!("{}/commit/{}", urls.repo_web(), c.sha),
        "commit": {
            "url": api,
            "author": person,
            "committer": person,
            "message": c.message,
            "tree": { "url": format!("{}/git/trees/{}", urls.repo_api(), c.sha), "sha": c.sha, "created": ts(&c.at) },
            "verification": null,
        },
        "author": user(urls, seed::BOT_LOGIN),
        "committer": user(urls, seed::BOT_LOGIN),
        "parents": [],
        "files": null,
        "stats": null,
    })
}

/// A `Comment` on `issue`.
pub(crate) fn comment(urls: &Urls, issue: &FakeIssue, comment: &FakeComment) -> Value {
    let web = urls.issue_web(issue);
    let (issue_url, pull_request_url) = if issue.is_pull_request() {
        (String::new(), web.clone())
    } else {
        (web.clone(), String::new())
    };
    json!({
        "id": comment.id,
        "html_url": format!("{web}#issuecomment-{}", comment.id),
        "pull_request_url": pull_request_url,
        "issue_url": issue_url,
        "user": user(urls, &comment.author),
        "original_author": "",
        "original_author_id": 0,
        "body": comment.body,
        "assets": [],
        "created_at": ts(&comment.created_at),
        "updated_at": ts(&comment.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::super::contract::Contract;
    use super::super::seed::{ASSIGNED_ISSUE, ASSIGNED_PR, MERGED_PR};
    use super::*;

    fn urls() -> Urls {
        Urls {
            web: "http://127.0.0.1:3000".to_owned(),
        }
    }

    /// Every shape the fake sends validates against the spec's definition
    /// (nulls aside) and declares no field the spec lacks.
    #[test]
    fn shapes_match_the_spec_definitions() {
        let contract = Contract::shared().expect("the swagger spec loads");
        let (urls, store) = (urls(), Store::seeded());
        let mut samples = vec![
            ("User", user(&urls, "alice")),
            ("Repository", repository(&urls, &store)),
        ];
        for issue in store.issues.values() {
            samples.push(("Issue", super::issue(&urls, &store, issue)));
            if issue.is_pull_request() {
                samples.push(("PullRequest", pull_request(&urls, &store, issue)));
            }
            for c in store.comments_of(issue.number) {
                samples.push(("Comment", comment(&urls, issue, c)));
            }
        }
        let pr = &store.issues[&ASSIGNED_PR];
        for r in &store.reviews {
            samples.push(("PullReview", review(&urls, pr, r)));
            for c in &r.comments {
                samples.push(("PullReviewComment", review_comment(&urls, pr, r, c)));
            }
        }
        for commits in store.branches.values() {
            for c in commits {
                samples.push(("Commit", commit(&urls, c)));
            }
        }
        for (name, value) in samples {
            let problems = contract.check_response(name, &value, &["username"]);
            assert!(problems.is_empty(), "{name}: {problems:#?}");
        }
    }

    #[test]
    fn nulls_and_omissions_follow_gitea() {
        let (urls, store) = (urls(), Store::seeded());
        let plain = issue(&urls, &store, &store.issues[&1]);
        assert!(plain["pull_request"].is_null());
        assert!(plain["assignees"].is_null());
        assert!(plain["milestone"].is_null() && plain["closed_at"].is_null());
        let assigned = issue(&urls, &store, &store.issues[&ASSIGNED_ISSUE]);
        assert_eq!(assigned["assignees"][0]["login"], "forge-bot");
        let pr_issue = issue(&urls, &store, &store.issues[&ASSIGNED_PR]);
        assert_eq!(pr_issue["pull_request"]["merged"], false);
        assert!(
            pr_issue["html_url"]
                .as_str()
                .unwrap()
                .ends_with("/pulls/18")
        );
        let pr = pull_request(&urls, &store, &store.issues[&ASSIGNED_PR]);
        assert_eq!(pr["assignees"], json!([]));
        assert_eq!(pr["url"], pr["html_url"]);
        assert!(pr.get("review_comments").is_none());
        assert_eq!(pr["additions"], 12);
        let merged = pull_request(&urls, &store, &store.issues[&MERGED_PR]);
        assert!(merged.get("additions").is_none());
        assert!(merged["merged_at"].as_str().unwrap().ends_with("+08:00"));
        assert!(merged["merge_commit_sha"].as_str().unwrap().len() == 40);
    }
}
