//! [`ScopedForge`]: the one place that decides what may be written.
//!
//! Reads pass through to any number in the repository. A write must first
//! be authorized ([`ScopedForge::authorize`]): the target must be the
//! assigned issue or one of its PRs, the body within the size limit, the
//! session's write budget not used up, and the text must pass the text
//! checker ([`crate::text_check`]): nothing in it may make the forge act
//! outside the scope (`closes #500` would close #500 when the PR merges: a
//! write outside the scope by other means), and its references and mentions
//! stay within the per-text limits. Only a [`WritePermit`] (which only
//! `authorize` makes) can be spent on a forge write, so no caller can skip
//! the decision.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use forge_protocol::{
    Comment, ErrorCode, IssueNumber, Method, RpcError, ScopeInfo, Text, TextRules, Updated,
};

use crate::forge::{Forge, ForgeError};
use crate::text_check::{self, Findings, Policy};

/// The write scope and limits of a session.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Repository owner.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// The assigned issue.
    pub issue: IssueNumber,
    /// All writable numbers (the issue first, then its PRs).
    pub writable: Vec<IssueNumber>,
    /// Largest body, bytes.
    pub max_body_bytes: usize,
    /// Forge writes allowed in the session.
    pub max_writes: u32,
    /// Keywords and per-text limits for every text written.
    pub text: TextRules,
}

#[cfg(test)]
impl Scope {
    /// acme/widgets, assigned #17 with PR #18, for tests.
    pub(crate) fn for_tests(max_body_bytes: usize, max_writes: u32) -> Scope {
        let n = |v| IssueNumber::new(v).expect("positive");
        Scope {
            owner: "acme".into(),
            repo: "widgets".into(),
            issue: n(17),
            writable: vec![n(17), n(18)],
            max_body_bytes,
            max_writes,
            text: text_check::default_rules(),
        }
    }
}

/// A forge wrapped in the session's write scope.
pub struct ScopedForge {
    inner: Arc<dyn Forge>,
    scope: Scope,
    policy: Policy,
    writes_used: AtomicU32,
}

/// Permission for one forge write, from [`ScopedForge::authorize`].
#[derive(Debug)]
pub struct WritePermit {
    method: Method,
    number: IssueNumber,
    body: Text,
    findings: Findings,
}

impl WritePermit {
    /// What the body refers to, mentions and closes (all allowed), for the audit.
    pub fn findings(&self) -> &Findings {
        &self.findings
    }
}

impl ScopedForge {
    /// Wrap `inner` in `scope`.
    pub fn new(inner: Arc<dyn Forge>, scope: Scope) -> Self {
        let writable: Vec<u64> = scope.writable.iter().map(|n| n.get()).collect();
        let policy = Policy::new(&scope.owner, &scope.repo, &writable, &scope.text);
        ScopedForge {
            inner,
            scope,
            policy,
            writes_used: AtomicU32::new(0),
        }
    }

    /// The forge underneath (kind, API base).
    pub fn inner(&self) -> &dyn Forge {
        &*self.inner
    }

    /// The writable numbers as integers.
    pub fn writable(&self) -> Vec<u64> {
        self.scope.writable.iter().map(|n| n.get()).collect()
    }

    /// Forge writes left in the budget.
    pub fn writes_left(&self) -> u32 {
        self.scope
            .max_writes
            .saturating_sub(self.writes_used.load(Ordering::SeqCst))
    }

    /// What `scope` answers.
    pub fn info(&self, done: bool) -> ScopeInfo {
        ScopeInfo {
            owner: self.scope.owner.clone(),
            repo: self.scope.repo.clone(),
            issue: self.scope.issue.get(),
            writable: self.writable(),
            writes_left: self.writes_left(),
            done,
            text: self.policy.rules().clone(),
        }
    }

    /// Decide a write: scope, body size, what the text makes the forge do,
    /// budget. On success one unit of the
    /// budget is reserved; give it back with [`ScopedForge::release`] if the
    /// write is not sent.
    pub fn authorize(
        &self,
        method: Method,
        number: IssueNumber,
        body: Text,
    ) -> Result<WritePermit, RpcError> {
        debug_assert!(method.writes_forge());
        if !self.scope.writable.contains(&number) {
            return Err(RpcError::scope_denied(number.get(), &self.writable()));
        }
        if body.len() > self.scope.max_body_bytes {
            return Err(RpcError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "body is {} bytes, over the {}-byte limit; shorten it (or split a comment in parts)",
                    body.len(),
                    self.scope.max_body_bytes
                ),
            )
            .with_data(serde_json::json!({ "limit": "max_body_bytes", "max": self.scope.max_body_bytes, "size": body.len() })));
        }
        let subject = match method {
            Method::PostComment => format!("comment to #{}", number.get()),
            _ => format!("description of #{}", number.get()),
        };
        let findings = text_check::check(body.as_str(), &self.policy).map_err(|refusal| {
            let mut err = refusal.to_rpc_error(&subject, &self.policy);
            err.data["number"] = number.get().into();
            err
        })?;
        let reserved = self
            .writes_used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used < self.scope.max_writes).then_some(used + 1)
            });
        if reserved.is_err() {
            return Err(RpcError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "the session's budget of {} forge writes is used up (0 left); finish with signal_done or ask a human",
                    self.scope.max_writes
                ),
            )
            .with_data(serde_json::json!({ "limit": "max_writes", "max": self.scope.max_writes, "left": 0 })));
        }
        Ok(WritePermit {
            method,
            number,
            body,
            findings,
        })
    }

    /// Count `writes` made by earlier sessions of the run against the budget.
    pub fn spent_earlier(&self, writes: u32) {
        self.writes_used.fetch_add(writes, Ordering::SeqCst);
    }

    /// Return the budget unit of a permit that was not spent.
    pub fn release(&self, permit: WritePermit) {
        drop(permit);
        self.writes_used.fetch_sub(1, Ordering::SeqCst);
    }

    /// Spend a permit: send the write. Blocks.
    pub fn write(&self, permit: &WritePermit) -> Result<Written, ForgeError> {
        match permit.method {
            Method::PostComment => self
                .inner
                .post_comment(permit.number, &permit.body)
                .map(Written::Comment),
            _ => self
                .inner
                .update_description(permit.number, &permit.body)
                .map(Written::Description),
        }
    }
}

/// The result of a forge write.
#[derive(Debug, Clone)]
pub enum Written {
    /// `post_comment` created this comment.
    Comment(Comment),
    /// `update_description` updated this issue or PR.
    Description(Updated),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::memory::MemoryForge;

    fn n(v: u64) -> IssueNumber {
        IssueNumber::new(v).unwrap()
    }

    fn scoped(max_writes: u32) -> ScopedForge {
        ScopedForge::new(
            Arc::new(MemoryForge::seeded("acme", "widgets")),
            Scope::for_tests(64, max_writes),
        )
    }

    fn text(s: &str) -> Text {
        Text::new(s).unwrap()
    }

    #[test]
    fn writes_outside_scope_are_denied_naming_the_set() {
        let f = scoped(5);
        let err = f
            .authorize(Method::PostComment, n(500), text("hi"))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::ScopeDenied);
        assert!(
            err.message.contains("#500") && err.message.contains("#17, #18"),
            "{}",
            err.message
        );
        assert_eq!(f.writes_left(), 5, "a denied write must not use the budget");
    }

    #[test]
    fn budget_and_body_limits() {
        let f = scoped(1);
        let err = f
            .authorize(
                Method::PostComment,
                n(17),
                text(&"far too long a body ".repeat(4)),
            )
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        let permit = f.authorize(Method::PostComment, n(17), text("ok")).unwrap();
        assert_eq!(f.writes_left(), 0);
        let err = f
            .authorize(Method::UpdateDescription, n(18), text("ok"))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::LimitExceeded);
        f.release(permit);
        assert_eq!(f.writes_left(), 1);
    }

    #[test]
    fn every_text_is_checked_for_what_it_makes_the_forge_do() {
        let f = scoped(5);
        for method in [Method::PostComment, Method::UpdateDescription] {
            for body in [
                "Closes #500",
                "fixes acme/widgets#500",
                "RESOLVES other/repo#17",
                ">reopens #3",
            ] {
                let err = f.authorize(method, n(18), text(body)).unwrap_err();
                assert_eq!(err.code, ErrorCode::ScopeDenied, "{body}");
                assert!(err.message.contains("the forge would"), "{}", err.message);
                assert_eq!(err.data["number"], 18);
            }
            let err = f
                .authorize(method, n(17), text("@a @b @c @d @e @f"))
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::LimitExceeded);
            assert_eq!(err.data["limit"], "max_mentions");
        }
        assert_eq!(f.writes_left(), 5, "a refused text must not use the budget");
        let permit = f
            .authorize(Method::PostComment, n(17), text("Closes #17; see #500"))
            .unwrap();
        assert_eq!(permit.findings().closing.len(), 1);
        assert_eq!(permit.findings().foreign_refs[0].to_string(), "#500");
    }

    #[test]
    fn permits_write_through() {
        let f = scoped(2);
        let permit = f
            .authorize(Method::PostComment, n(18), text("done"))
            .unwrap();
        assert!(matches!(f.write(&permit), Ok(Written::Comment(c)) if c.body == "done"));
    }

    mod properties {
        use super::*;
        use crate::forge::ForgeError;
        use forge_protocol::{Issue, PullRequest};
        use proptest::prelude::*;
        use std::sync::Mutex;

        /// A forge that records the writes that reach it.
        #[derive(Default)]
        struct Recording(Mutex<Vec<(Method, u64, String)>>);

        impl Forge for Recording {
            fn kind(&self) -> &'static str {
                "recording"
            }
            fn api_base(&self) -> Option<&str> {
                None
            }
            fn preflight(&self, _: IssueNumber) -> Result<String, ForgeError> {
                Ok(String::new())
            }
            fn read_issue(&self, _: IssueNumber) -> Result<Issue, ForgeError> {
                Err(ForgeError::NotFound("reads are not under test".into()))
            }
            fn read_pr(&self, _: IssueNumber) -> Result<PullRequest, ForgeError> {
                Err(ForgeError::NotFound("reads are not under test".into()))
            }
            fn read_comments(&self, _: IssueNumber) -> Result<Vec<Comment>, ForgeError> {
                Ok(vec![])
            }
            fn post_comment(&self, n: IssueNumber, body: &Text) -> Result<Comment, ForgeError> {
                self.0.lock().unwrap().push((
                    Method::PostComment,
                    n.get(),
                    body.as_str().to_string(),
                ));
                Err(ForgeError::Unavailable("recorded".into()))
            }
            fn update_description(
                &self,
                n: IssueNumber,
                body: &Text,
            ) -> Result<Updated, ForgeError> {
                self.0.lock().unwrap().push((
                    Method::UpdateDescription,
                    n.get(),
                    body.as_str().to_string(),
                ));
                Err(ForgeError::Unavailable("recorded".into()))
            }
        }

        fn body() -> impl Strategy<Value = (String, bool)> {
            let keyword = prop_oneof![
                Just(""),
                Just("closes "),
                Just("Fixes: "),
                Just("RESOLVED "),
                Just("reopens "),
                Just("see "),
            ];
            // (reference, whether it is outside the writable set)
            let reference = prop_oneof![
                (1u64..600).prop_map(|n| (format!("#{n}"), n != 17 && n != 18)),
                (1u64..600).prop_map(|n| (format!("acme/widgets#{n}"), n != 17 && n != 18)),
                (1u64..600).prop_map(|n| (format!("other/repo#{n}"), true)),
                (1u64..600).prop_map(|n| (
                    format!("https://g.example/acme/widgets/pulls/{n}"),
                    n != 17 && n != 18
                )),
            ];
            (
                proptest::collection::vec((keyword, reference), 1..4),
                "[a-z .]{0,20}",
            )
                .prop_map(|(parts, tail)| {
                    let mut s: String =
                        parts.iter().map(|(k, (r, _))| format!("{k}{r} ")).collect();
                    s.push_str(&tail);
                    let escapes = parts
                        .iter()
                        .any(|(k, (_, outside))| *outside && !k.is_empty() && *k != "see ");
                    (s, escapes)
                })
        }

        proptest! {
            /// Whatever the sequence of write attempts, nothing outside the
            /// writable set (directly or through a closing keyword) reaches
            /// the forge, and never more writes than the budget.
            #[test]
            fn no_write_escapes_the_scope(
                calls in proptest::collection::vec((any::<bool>(), 1u64..600, body()), 1..40),
                max_writes in 0u32..10,
            ) {
                let recording = Arc::new(Recording::default());
                let scope = Scope::for_tests(1024, max_writes);
                let forge = ScopedForge::new(recording.clone(), scope);
                let mut escaping = std::collections::HashSet::new();
                for (comment, number, (body, escapes)) in calls {
                    let method = if comment { Method::PostComment } else { Method::UpdateDescription };
                    if escapes {
                        escaping.insert(body.clone());
                    }
                    if let Ok(permit) = forge.authorize(method, n(number), text(&body)) {
                        let _ = forge.write(&permit);
                    }
                }
                let writes = recording.0.lock().unwrap().clone();
                prop_assert!(writes.len() <= max_writes as usize);
                for (method, number, body) in writes {
                    prop_assert!(number == 17 || number == 18, "write reached #{}", number);
                    prop_assert!(
                        !escaping.contains(&body),
                        "{} to #{} carries a keyword aimed outside: {:?}", method.name(), number, body
                    );
                }
            }
        }
    }
}
