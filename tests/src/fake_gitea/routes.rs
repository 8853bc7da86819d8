//! Routing, authentication and the endpoint handlers of the fake: what
//! Gitea 1.25.4 answers to a well-formed request, including its quirks
//! (500 for the comments of a missing issue, 201 for PATCH, 422
//! `[Body]: Required` for an empty comment, 412 for a bad `state`).
//!
//! Handlers are synchronous and work on the locked [`Store`]; faults and
//! the contract check are applied around them in the parent module.

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use super::Recorded;
use super::contract::{Checked, parse_query, percent_decode};
use super::render::{self, Urls};
use super::seed::{self, BOT_LOGIN, FULL_NAME, OWNER, REPO, Store, TOKEN};

/// Gitea's default and largest page size (`DEFAULT_PAGING_NUM`, `MAX_RESPONSE_ITEMS`).
const DEFAULT_PAGE: usize = 30;
const MAX_PAGE: usize = 50;

/// An answer before it becomes an HTTP response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    /// `None`: no body at all (and no Content-Type).
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    pub(crate) fn error(urls: &Urls, status: u16, message: &str) -> Reply {
        Reply::json(status, render::error(urls, message))
    }

    pub(crate) fn not_found(urls: &Urls) -> Reply {
        Reply::json(404, render::not_found(urls))
    }

    /// Gitea's `APIErrorInternal`: the message is empty in production.
    pub(crate) fn internal(urls: &Urls) -> Reply {
        Reply::error(urls, 500, "")
    }
}

/// Answers one request. `checked` is the contract's verdict on it.
pub(crate) fn respond(store: &mut Store, urls: &Urls, rec: &Recorded, checked: &Checked) -> Reply {
    // Gitea's order: the router (404), then the token (401), then binding (422).
    if !checked.known_route {
        return Reply::not_found(urls);
    }
    if let Err(reply) = authenticate(urls, rec.authorization.as_deref()) {
        return reply;
    }
    if let Some(first) = checked.violations.first() {
        return Reply::error(urls, 422, first);
    }
    let path = rec.path.strip_prefix("/api/v1/").unwrap_or(&rec.path);
    let segments: Vec<&str> = path.split('/').collect();
    match (rec.method.as_str(), segments.as_slice()) {
        ("GET", ["user"]) => Reply::json(200, render::user(urls, BOT_LOGIN)),
        (method, ["repos", owner, repo, rest @ ..]) => {
            if !owner.eq_ignore_ascii_case(OWNER) || !repo.eq_ignore_ascii_case(REPO) {
                return Reply::not_found(urls);
            }
            let number = |s: &str| s.parse::<u64>().ok();
            match (method, rest) {
                ("GET", []) => Reply::json(200, render::repository(urls, store)),
                ("GET", ["issues", n]) => get_issue(store, urls, number(n)),
                ("PATCH", ["issues", n]) => edit_issue(store, urls, number(n), rec),
                ("GET", ["issues", n, "comments"]) => list_comments(store, urls, number(n), rec),
                ("POST", ["issues", n, "comments"]) => create_comment(store, urls, number(n), rec),
                ("GET", ["pulls", n]) => get_pull(store, urls, number(n)),
                ("PATCH", ["pulls", n]) => edit_pull(store, urls, number(n), rec),
                ("POST", ["pulls"]) => create_pull(store, urls, rec),
                ("GET", ["pulls", n, "reviews"]) => list_reviews(store, urls, number(n), rec),
                ("GET", ["pulls", n, "reviews", id, "comments"]) => {
                    review_comments(store, urls, number(n), number(id))
                }
                ("GET", ["pulls", n, "commits"]) => pull_commits(store, urls, number(n), rec),
                ("GET", ["pulls", base, head]) => pull_by_base_head(
                    store,
                    urls,
                    &percent_decode(base, false),
                    &percent_decode(head, false),
                ),
                ("GET", ["compare", basehead]) => {
                    compare(store, urls, &percent_decode(basehead, false))
                }
                ("GET", ["collaborators", user]) => {
                    check_collaborator(store, urls, &percent_decode(user, false))
                }
                _ => Reply::not_found(urls),
            }
        }
        _ => Reply::not_found(urls),
    }
}

/// `Authorization: token <T>` or `Bearer <T>`, with the scheme spelled
/// exactly so (Gitea 1.24 and Forgejo only take a lowercase `token`).
fn authenticate(urls: &Urls, authorization: Option<&str>) -> Result<(), Reply> {
    let header = authorization.map(str::trim).unwrap_or("");
    if header.is_empty() {
        return Err(Reply::error(urls, 401, "token is required"));
    }
    let token = header
        .strip_prefix("token ")
        .or_else(|| header.strip_prefix("Bearer "));
    if token == Some(TOKEN) {
        Ok(())
    } else {
        Err(Reply::error(
            urls,
            401,
            "invalid username, password or token",
        ))
    }
}

fn get_issue(store: &Store, urls: &Urls, number: Option<u64>) -> Reply {
    match number.and_then(|n| store.issues.get(&n)) {
        Some(issue) => Reply::json(200, render::issue(urls, store, issue)),
        None => Reply::not_found(urls),
    }
}

/// `GET /repos/{owner}/{repo}/collaborators/{collaborator}`: 204 with no
/// body for a collaborator, 404 for another user, 422 for no such user.
fn check_collaborator(store: &Store, urls: &Urls, login: &str) -> Reply {
    if store
        .collaborators
        .iter()
        .any(|c| c.eq_ignore_ascii_case(login))
    {
        return Reply {
            status: 204,
            body: None,
            headers: Vec::new(),
        };
    }
    if store.knows_user(login) {
        return Reply::not_found(urls);
    }
    Reply::error(
        urls,
        422,
        &format!("user does not exist [uid: 0, name: {login}]"),
    )
}

fn get_pull(store: &Store, urls: &Urls, number: Option<u64>) -> Reply {
    match number.and_then(|n| store.issues.get(&n)) {
        Some(issue) if issue.is_pull_request() => {
            Reply::json(200, render::pull_request(urls, store, issue))
        }
        _ => Reply::not_found(urls),
    }
}

fn list_comments(store: &Store, urls: &Urls, number: Option<u64>, rec: &Recorded) -> Reply {
    let Some(issue) = number.and_then(|n| store.issues.get(&n)) else {
        // Gitea: GetIssueByIndex fails → APIErrorInternal, not 404.
        return Reply::internal(urls);
    };
    let mut since: Option<DateTime<FixedOffset>> = None;
    let mut before: Option<DateTime<FixedOffset>> = None;
    for (key, value) in parse_query(rec.query.as_deref().unwrap_or("")) {
        let slot = match key.as_str() {
            "since" => &mut since,
            "before" => &mut before,
            _ => continue,
        };
        match DateTime::parse_from_rfc3339(&value) {
            Ok(t) => *slot = Some(t),
            Err(_) => return Reply::error(urls, 422, &format!("invalid {key}: {value}")),
        }
    }
    // Both bounds are inclusive and apply to `updated_at`.
    let comments: Vec<Value> = store
        .comments_of(issue.number)
        .into_iter()
        .filter(|c| since.is_none_or(|s| c.updated_at >= s))
        .filter(|c| before.is_none_or(|b| c.updated_at <= b))
        .map(|c| render::comment(urls, issue, c))
        .collect();
    let mut reply = Reply::json(200, Value::from(comments.clone()));
    reply
        .headers
        .push(("X-Total-Count", comments.len().to_string()));
    reply
}

fn create_comment(store: &mut Store, urls: &Urls, number: Option<u64>, rec: &Recorded) -> Reply {
    let form = match bind(urls, rec) {
        Ok(form) => form,
        Err(reply) => return reply,
    };
    // Binding (422) comes before the issue lookup (500).
    let body = form.get("body").and_then(Value::as_str).unwrap_or("");
    if body.is_empty() {
        return Reply::error(urls, 422, "[Body]: Required");
    }
    let Some(n) = number.filter(|n| store.issues.contains_key(n)) else {
        return Reply::internal(urls);
    };
    let comment = store.add_comment(n, BOT_LOGIN, body);
    let issue = &store.issues[&n];
    Reply::json(201, render::comment(urls, issue, &comment))
}

fn edit_issue(store: &mut Store, urls: &Urls, number: Option<u64>, rec: &Recorded) -> Reply {
    let form = match bind(urls, rec) {
        Ok(form) => form,
        Err(reply) => return reply,
    };
    let Some(issue) = number.and_then(|n| store.issues.get_mut(&n)) else {
        return Reply::not_found(urls);
    };
    if let Err(reply) = check_state(urls, &form, issue) {
        return reply;
    }
    apply_common(&form, issue);
    let issue = issue.clone();
    Reply::json(201, render::issue(urls, store, &issue))
}

fn edit_pull(store: &mut Store, urls: &Urls, number: Option<u64>, rec: &Recorded) -> Reply {
    let form = match bind(urls, rec) {
        Ok(form) => form,
        Err(reply) => return reply,
    };
    let Some(issue) = number
        .and_then(|n| store.issues.get_mut(&n))
        .filter(|i| i.is_pull_request())
    else {
        return Reply::not_found(urls);
    };
    let base = form.get("base").and_then(Value::as_str).unwrap_or("");
    if !base.is_empty() && !store.branches.contains_key(base) {
        return Reply::not_found(urls);
    }
    if let Err(reply) = check_state(urls, &form, issue) {
        return reply;
    }
    apply_common(&form, issue);
    if let (false, Some(pull)) = (base.is_empty(), issue.pull.as_mut()) {
        pull.base = base.to_owned();
    }
    let issue = issue.clone();
    Reply::json(201, render::pull_request(urls, store, &issue))
}

/// `POST /pulls`: Gitea's `CreatePullRequest`. `head` is a branch of this
/// repository or `owner:branch` of a fork (the fake has no forks as
/// repositories: 404); head, base and title are required (422); a missing
/// branch is 404; an open PR for the same head and base is 409; the new
/// PR takes the next number of the issue sequence.
fn create_pull(store: &mut Store, urls: &Urls, rec: &Recorded) -> Reply {
    let form = match bind(urls, rec) {
        Ok(form) => form,
        Err(reply) => return reply,
    };
    let field = |k: &str| form.get(k).and_then(Value::as_str).unwrap_or("");
    for (key, name) in [("head", "Head"), ("base", "Base"), ("title", "Title")] {
        if field(key).is_empty() {
            return Reply::error(urls, 422, &format!("[{name}]: Required"));
        }
    }
    let (head, base) = (field("head"), field("base"));
    let head = match head.split_once(':') {
        Some((owner, branch)) if owner.eq_ignore_ascii_case(OWNER) => branch,
        Some(_) => return Reply::not_found(urls),
        None => head,
    };
    if !store.branches.contains_key(head) || !store.branches.contains_key(base) {
        return Reply::not_found(urls);
    }
    if head == base {
        return Reply::error(
            urls,
            422,
            "Invalid PullRequest: There are no changes between the head and the base",
        );
    }
    let open = store.issues.values().find(|i| {
        i.state == "open"
            && i.pull
                .as_ref()
                .is_some_and(|p| p.head == head && p.base == base && p.head_repo == FULL_NAME)
    });
    if let Some(existing) = open {
        let pull_id = existing.pull.as_ref().map_or(0, |p| p.id);
        return Reply::error(
            urls,
            409,
            &format!(
                "pull request already exists for these targets [id: {pull_id}, issue_id: {}, head_repo_id: {}, base_repo_id: {}, head_branch: {head}, base_branch: {base}]",
                existing.id,
                seed::REPO_ID,
                seed::REPO_ID
            ),
        );
    }
    let number = store.add_pull(
        head,
        FULL_NAME,
        base,
        BOT_LOGIN,
        field("title"),
        field("body"),
    );
    let issue = store.issues[&number].clone();
    Reply::json(201, render::pull_request(urls, store, &issue))
}

/// `GET /pulls/{base}/{head}`: the latest PR from `head` of this
/// repository (not a fork's branch of the same name) into `base`.
fn pull_by_base_head(store: &Store, urls: &Urls, base: &str, head: &str) -> Reply {
    let found = store.issues.values().rev().find(|i| {
        i.pull
            .as_ref()
            .is_some_and(|p| p.head == head && p.base == base && p.head_repo == FULL_NAME)
    });
    match found {
        Some(issue) => Reply::json(200, render::pull_request(urls, store, issue)),
        None => Reply::not_found(urls),
    }
}

/// `page` and `limit` as Gitea reads them: page from 1, limit defaulting
/// to 30 and silently clamped to 50.
fn paging(rec: &Recorded) -> (usize, usize) {
    let (mut page, mut limit) = (1usize, 0usize);
    for (key, value) in parse_query(rec.query.as_deref().unwrap_or("")) {
        match key.as_str() {
            "page" => page = value.parse().unwrap_or(1).max(1),
            "limit" => limit = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    let limit = if limit == 0 {
        DEFAULT_PAGE
    } else {
        limit.min(MAX_PAGE)
    };
    (page, limit)
}

fn page_of<T: Clone>(all: &[T], page: usize, limit: usize) -> Vec<T> {
    all.iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .cloned()
        .collect()
}

/// `GET /pulls/{index}/reviews`: paginated, oldest first, with
/// `X-Total-Count` (and no `Link`, as Gitea's handler).
fn list_reviews(store: &Store, urls: &Urls, number: Option<u64>, rec: &Recorded) -> Reply {
    let Some(issue) = number
        .and_then(|n| store.issues.get(&n))
        .filter(|i| i.is_pull_request())
    else {
        return Reply::not_found(urls);
    };
    let all: Vec<&seed::FakeReview> = store
        .reviews
        .iter()
        .filter(|r| r.pull == issue.number)
        .collect();
    let (page, limit) = paging(rec);
    let list: Vec<Value> = page_of(&all, page, limit)
        .into_iter()
        .map(|r| render::review(urls, issue, r))
        .collect();
    let mut reply = Reply::json(200, Value::from(list));
    reply.headers.push(("X-Total-Count", all.len().to_string()));
    reply
}

/// `GET /pulls/{index}/reviews/{id}/comments`: all inline comments of one
/// review (not paginated).
fn review_comments(store: &Store, urls: &Urls, number: Option<u64>, id: Option<u64>) -> Reply {
    let Some(issue) = number
        .and_then(|n| store.issues.get(&n))
        .filter(|i| i.is_pull_request())
    else {
        return Reply::not_found(urls);
    };
    let Some(review) = store
        .reviews
        .iter()
        .find(|r| Some(r.id) == id && r.pull == issue.number)
    else {
        return Reply::not_found(urls);
    };
    let list: Vec<Value> = review
        .comments
        .iter()
        .map(|c| render::review_comment(urls, issue, review, c))
        .collect();
    Reply::json(200, Value::from(list))
}

/// `GET /pulls/{index}/commits`: the head branch's commits, paginated,
/// with Gitea's `X-Total`, `X-HasMore`, ... and `Link` headers.
fn pull_commits(store: &Store, urls: &Urls, number: Option<u64>, rec: &Recorded) -> Reply {
    let Some(pull) = number
        .and_then(|n| store.issues.get(&n))
        .and_then(|i| i.pull.as_ref())
    else {
        return Reply::not_found(urls);
    };
    let all = store.branches.get(&pull.head).cloned().unwrap_or_default();
    let (page, limit) = paging(rec);
    let list: Vec<Value> = page_of(&all, page, limit)
        .iter()
        .map(|c| render::commit(urls, c))
        .collect();
    let pages = all.len().div_ceil(limit).max(1);
    let has_more = page < pages;
    let mut reply = Reply::json(200, Value::from(list));
    let link = |p: usize, rel: &str| {
        format!(
            "<{}/repos/{OWNER}/{REPO}/pulls/{}/commits?limit={limit}&page={p}>; rel=\"{rel}\"",
            urls.api(),
            number.unwrap_or_default()
        )
    };
    let mut links = Vec::new();
    if has_more {
        links.push(link(page + 1, "next"));
        links.push(link(pages, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    reply.headers.extend([
        ("X-Total", all.len().to_string()),
        ("X-Total-Count", all.len().to_string()),
        ("X-PerPage", limit.to_string()),
        ("X-Page", page.to_string()),
        ("X-PageCount", pages.to_string()),
        ("X-HasMore", has_more.to_string()),
    ]);
    if !links.is_empty() {
        reply.headers.push(("Link", links.join(",")));
    }
    reply
}

/// `GET /compare/{base}...{head}`: the commits of head the base lacks.
fn compare(store: &Store, urls: &Urls, basehead: &str) -> Reply {
    let Some((base, head)) = basehead.split_once("...") else {
        return Reply::not_found(urls);
    };
    let (Some(_), Some(commits)) = (store.branches.get(base), store.branches.get(head)) else {
        return Reply::not_found(urls);
    };
    let list: Vec<Value> = commits.iter().map(|c| render::commit(urls, c)).collect();
    Reply::json(
        200,
        serde_json::json!({ "total_commits": list.len(), "commits": list }),
    )
}

/// Gitea's form binding: a JSON Content-Type, then a JSON object (an empty
/// body binds as `{}`).
fn bind(urls: &Urls, rec: &Recorded) -> Result<Map<String, Value>, Reply> {
    let json = rec.content_type.as_deref().is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err(Reply::error(urls, 422, "Empty/Unsupported Content-Type"));
    }
    if rec.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&rec.body) {
        Ok(Value::Object(form)) => Ok(form),
        _ => Err(Reply::error(urls, 422, "[]: Deserialization error")),
    }
}

/// `state` must be `open` or `closed`, and a merged PR's cannot change.
fn check_state(
    urls: &Urls,
    form: &Map<String, Value>,
    issue: &seed::FakeIssue,
) -> Result<(), Reply> {
    let Some(state) = form.get("state").and_then(Value::as_str) else {
        return Ok(());
    };
    if state != "open" && state != "closed" {
        return Err(Reply::error(urls, 412, &format!("unknown state: {state}")));
    }
    if issue.pull.as_ref().is_some_and(|p| p.merged) {
        return Err(Reply::error(
            urls,
            412,
            "cannot change state of this pull request, it was already merged",
        ));
    }
    Ok(())
}

/// The edits both PATCH endpoints share: an empty title is ignored, a
/// present body replaces (so `""` clears it), and state open/closed.
fn apply_common(form: &Map<String, Value>, issue: &mut seed::FakeIssue) {
    let now = seed::now();
    if let Some(title) = form
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        issue.title = title.to_owned();
    }
    if let Some(body) = form.get("body").and_then(Value::as_str) {
        issue.body = body.to_owned();
    }
    if let Some(state) = form.get("state").and_then(Value::as_str)
        && state != issue.state
    {
        issue.closed_at = (state == "closed").then_some(now);
        issue.state = state.to_owned();
    }
    issue.updated_at = now;
}
