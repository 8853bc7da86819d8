//! Reading a write back: is the write announced by an `intent` on the forge?
//!
//! When a forge write's answer is lost (a timeout, a dropped connection, a
//! 5xx after the forge may have applied it) or the sidecar stopped between
//! `intent` and `op`, the write is never sent again: its target is read
//! back and searched for the write's marker ([`crate::marker`]). A comment
//! is looked for among the target's comments, newest first; a description
//! in the target's body; a pull request with `GET /pulls/{base}/{head}`.
//! [`read_back`] answers what it found; deciding what that means for the
//! budget and the audit is [`crate::service`]'s job.

use forge_protocol::event::Intent;
use forge_protocol::{Comment, IssueNumber, Method, PullRequest, Updated};

use crate::forge::{Forge, ForgeError};

/// A write found on the forge by its marker.
#[derive(Debug, Clone)]
pub enum Found {
    /// The comment `post_comment` created.
    Comment(Comment),
    /// The issue or pull request `update_description` updated.
    Description(Updated),
    /// The pull request `open_pr` opened.
    PullRequest(PullRequest),
}

impl Found {
    /// The forge's id of what was found: the comment id, or the issue or
    /// pull request number.
    pub fn forge_id(&self) -> u64 {
        match self {
            Found::Comment(c) => c.id,
            Found::Description(Updated::Issue(i)) => i.number,
            Found::Description(Updated::PullRequest(p)) => p.number,
            Found::PullRequest(p) => p.number,
        }
    }

    /// "comment 12", "description of #17", "PR #21", for summaries.
    pub fn describe(&self) -> String {
        match self {
            Found::Comment(c) => format!("comment {}", c.id),
            Found::Description(_) => format!("description of #{}", self.forge_id()),
            Found::PullRequest(p) => format!("PR #{}", p.number),
        }
    }
}

/// Why an intent cannot be read back at all.
#[derive(Debug, Clone, PartialEq)]
pub enum Unreadable {
    /// The intent carries no marker (written before writes had one), or
    /// not the fields its method needs.
    NoMarker,
    /// The forge failed while reading back.
    Forge(ForgeError),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::NoMarker => f.write_str(
                "the write was recorded without a marker, so it cannot be found on the forge",
            ),
            Unreadable::Forge(e) => write!(f, "reading back failed: {e}"),
        }
    }
}

/// Look for the write `intent` announced. `Ok(None)`: it is not on the
/// forge. Blocks.
pub fn read_back(forge: &dyn Forge, intent: &Intent) -> Result<Option<Found>, Unreadable> {
    let key = intent.write.as_ref().ok_or(Unreadable::NoMarker)?;
    let marker = key.marker();
    let number = intent.target.and_then(IssueNumber::new);
    match (Method::from_name(&intent.op), number) {
        (Some(Method::PostComment), Some(n)) => {
            let comments = forge.read_comments(n).map_err(Unreadable::Forge)?;
            // The write is recent: search from the newest.
            Ok(comments
                .into_iter()
                .rev()
                .find(|c| c.body.contains(&marker))
                .map(Found::Comment))
        }
        (Some(Method::UpdateDescription), Some(n)) => {
            let issue = forge.read_issue(n).map_err(Unreadable::Forge)?;
            if !issue.body.contains(&marker) {
                return Ok(None);
            }
            let updated = if issue.is_pull_request {
                Updated::PullRequest(forge.read_pr(n).map_err(Unreadable::Forge)?)
            } else {
                Updated::Issue(issue)
            };
            Ok(Some(Found::Description(updated)))
        }
        (Some(Method::OpenPr), _) => {
            let (Some(base), Some(head)) = (&key.base, &key.head) else {
                return Err(Unreadable::NoMarker);
            };
            let pr = forge.find_pr(base, head).map_err(Unreadable::Forge)?;
            Ok(pr
                .filter(|p| p.body.contains(&marker))
                .map(Found::PullRequest))
        }
        _ => Err(Unreadable::NoMarker),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::memory::MemoryForge;
    use crate::marker::with_marker;
    use forge_protocol::Text;
    use forge_protocol::event::WriteKey;

    fn intent(op: &str, target: Option<u64>, id: &str) -> Intent {
        Intent {
            op_id: 1,
            op: op.into(),
            target,
            write: Some(WriteKey {
                id: id.into(),
                call: "c".into(),
                mode: None,
                base: None,
                head: None,
            }),
        }
    }

    #[test]
    fn a_comment_is_found_by_its_marker_and_only_by_it() {
        let forge = MemoryForge::seeded("acme", "widgets");
        let n = IssueNumber::new(17).unwrap();
        let i = intent("post_comment", Some(17), "s/1");
        assert!(read_back(&forge, &i).unwrap().is_none());
        let marker = i.write.as_ref().unwrap().marker();
        let posted = forge
            .post_comment(n, &Text::new(with_marker("hello", &marker)).unwrap())
            .unwrap();
        let found = read_back(&forge, &i).unwrap().expect("found");
        assert_eq!(found.forge_id(), posted.id);
        // Another write's identity is not this one's.
        let other = intent("post_comment", Some(17), "s/11");
        assert!(read_back(&forge, &other).unwrap().is_none());
    }

    #[test]
    fn a_description_is_found_in_the_body() {
        let forge = MemoryForge::seeded("acme", "widgets");
        let i = intent("update_description", Some(18), "s/2");
        assert!(read_back(&forge, &i).unwrap().is_none());
        let marker = i.write.as_ref().unwrap().marker();
        forge
            .update_description(
                IssueNumber::new(18).unwrap(),
                &Text::new(with_marker("new", &marker)).unwrap(),
            )
            .unwrap();
        let found = read_back(&forge, &i).unwrap().expect("found");
        assert!(matches!(found, Found::Description(Updated::PullRequest(_))));
    }

    #[test]
    fn an_intent_without_a_marker_cannot_be_read_back() {
        let forge = MemoryForge::seeded("acme", "widgets");
        let mut i = intent("post_comment", Some(17), "s/1");
        i.write = None;
        assert_eq!(read_back(&forge, &i).unwrap_err(), Unreadable::NoMarker);
    }
}
