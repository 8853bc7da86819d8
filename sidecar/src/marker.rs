//! Write identity: the marker every forge write carries, and the texts the
//! sidecar composes around an agent's text.
//!
//! Each forge write ends with `<!-- forge-sidecar:write SESSION/OP -->`
//! ([`forge_protocol::event::write_marker`]), the identity of its `intent`.
//! It is an HTML comment: Gitea shows nothing of it, and it holds no `#`,
//! `!` or `@`, so it refers to nothing and mentions no one. When a write's
//! answer is lost, the sidecar reads the target back and looks for it
//! ([`crate::service`]); only the sidecar may write one, so an agent's text
//! that contains the reserved words is refused ([`refuse_claims`]).
//!
//! Descriptions: [`compose`] builds the body `update_description` sends for
//! each [`DescriptionMode`]; in `section` mode the agent's text sits between
//! [`SECTION_BEGIN`] and [`SECTION_END`] and nothing outside them changes.

use forge_protocol::event::{MAX_PREVIOUS_BODY_BYTES, PreviousBody};
use forge_protocol::{DescriptionMode, ErrorCode, RpcError};
use sha2::{Digest, Sha256};

/// What every sidecar marker starts with (after `<!--` and a space).
const RESERVED: &[&str] = &["forge-sidecar:write", "forge-sidecar:section"];

/// Opens the sidecar's section of a description.
pub const SECTION_BEGIN: &str = "<!-- forge-sidecar:section begin -->";
/// Closes the sidecar's section of a description.
pub const SECTION_END: &str = "<!-- forge-sidecar:section end -->";

/// The identity of the write announced by `intent` `op_id` of `session`.
pub fn write_id(session: &str, op_id: u64) -> String {
    format!("{session}/{op_id}")
}

/// Refuse a text that holds a sidecar marker (or its words in any case):
/// an agent could otherwise claim the identity of another write, or move
/// the bounds of the sidecar's section. `subject` names the text.
pub fn refuse_claims(subject: &str, text: &str) -> Result<(), RpcError> {
    let lower = text.to_lowercase();
    match RESERVED.iter().find(|word| lower.contains(*word)) {
        None => Ok(()),
        Some(word) => Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!(
                "{subject} contains '{word}', which only the sidecar writes (it marks each write and \
                 its own section of a description); remove every '<!-- {word} ... -->' from the text \
                 and send it again. To keep the rest of a description, use update_description with \
                 mode append or section instead of copying the text back"
            ),
        )
        .with_data(serde_json::json!({ "reserved": word }))),
    }
}

/// `text`, unchanged, with `marker` after a blank line.
pub fn with_marker(text: &str, marker: &str) -> String {
    format!("{text}\n\n{marker}")
}

/// The description `update_description` sends: `text` (carrying `marker`)
/// put into `current` as `mode` says. No text of `current` outside the
/// sidecar's section is lost in any mode but `replace`.
pub fn compose(mode: DescriptionMode, current: &str, text: &str, marker: &str) -> String {
    let marked = with_marker(text, marker);
    match mode {
        DescriptionMode::Replace => marked,
        DescriptionMode::Append if current.trim().is_empty() => marked,
        DescriptionMode::Append => format!("{}\n\n{marked}", current.trim_end()),
        DescriptionMode::Section => {
            let section = format!("{SECTION_BEGIN}\n{marked}\n{SECTION_END}");
            match section_bounds(current) {
                Some((start, end)) => {
                    format!("{}{section}{}", &current[..start], &current[end..])
                }
                None if current.trim().is_empty() => section,
                None => format!("{}\n\n{section}", current.trim_end()),
            }
        }
    }
}

/// The byte range of the sidecar's section in `body`: from the last
/// [`SECTION_BEGIN`] to the end of the first [`SECTION_END`] after it.
/// A begin without an end, or an end without a begin (a human edited the
/// markers), is no section: a new one is added and the stray marker is
/// left where it is, with every other character of the body.
fn section_bounds(body: &str) -> Option<(usize, usize)> {
    let start = body.rfind(SECTION_BEGIN)?;
    let after = start + SECTION_BEGIN.len();
    let end = body[after..].find(SECTION_END)? + after + SECTION_END.len();
    Some((start, end))
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fingerprint of a call: hex SHA-256 over its parts, each prefixed by
/// its length so no two different calls share one.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut joined = Vec::new();
    for part in parts {
        joined.extend_from_slice(&(part.len() as u64).to_be_bytes());
        joined.extend_from_slice(part.as_bytes());
    }
    sha256_hex(&joined)
}

/// The previous description for the `op` event: whole when its JSON form
/// fits [`MAX_PREVIOUS_BODY_BYTES`], always with its SHA-256 and size.
pub fn previous_body(body: &str) -> PreviousBody {
    let json_len = serde_json::to_string(body).map_or(usize::MAX, |s| s.len());
    PreviousBody {
        body: (json_len <= MAX_PREVIOUS_BODY_BYTES).then(|| body.to_string()),
        sha256: sha256_hex(body.as_bytes()),
        bytes: body.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_protocol::event::write_marker;

    const M: &str = "<!-- forge-sidecar:write 20261202T101010.000Z-abcdef/3 -->";

    #[test]
    fn the_marker_is_a_comment_naming_session_and_op() {
        assert_eq!(write_marker(&write_id("20261202T101010.000Z-abcdef", 3)), M);
    }

    #[test]
    fn the_text_checker_accepts_marked_texts_and_finds_nothing_in_markers() {
        use crate::text_check::{Policy, check, default_rules};
        let policy = Policy::new("acme", "widgets", &[17], &default_rules());
        for mode in DescriptionMode::ALL {
            let text = compose(mode, "", "plain words", M);
            let found = check(&text, &policy).expect("a marked text passes the checker");
            assert!(
                found.closing.is_empty()
                    && found.foreign_refs.is_empty()
                    && found.mentions.is_empty(),
                "{mode}: {found:?}"
            );
        }
    }

    #[test]
    fn agent_texts_may_not_carry_sidecar_markers() {
        for claim in [
            M.to_string(),
            "<!--FORGE-SIDECAR:WRITE x/1-->".into(),
            format!("text {SECTION_END} more"),
            "forge-sidecar:section begin".into(),
        ] {
            let err = refuse_claims("comment to #17", &claim).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidParams, "{claim}");
            assert!(err.message.contains("only the sidecar writes"), "{err:?}");
        }
        refuse_claims("x", "the forge-sidecar: a daemon <!-- a note -->").unwrap();
    }

    #[test]
    fn replace_and_append() {
        assert_eq!(
            compose(DescriptionMode::Replace, "old", "new\n", M),
            format!("new\n\n\n{M}")
        );
        assert_eq!(
            compose(DescriptionMode::Append, "old text\n\n", "more", M),
            format!("old text\n\nmore\n\n{M}")
        );
        assert_eq!(
            compose(DescriptionMode::Append, " ", "more", M),
            format!("more\n\n{M}")
        );
    }

    #[test]
    fn section_keeps_everything_outside_it() {
        let human = "Steps:\n1. do it\n";
        let first = compose(DescriptionMode::Section, human, "status: started", M);
        assert!(first.starts_with(human.trim_end()), "{first}");
        assert!(first.ends_with(SECTION_END));
        // A human adds text after the section; the next write keeps it.
        let edited = format!("{first}\n\nHuman note after.");
        let m2 = "<!-- forge-sidecar:write s/4 -->";
        let second = compose(DescriptionMode::Section, &edited, "status: done", m2);
        assert!(second.starts_with(human.trim_end()));
        assert!(second.ends_with("\n\nHuman note after."), "{second}");
        assert!(second.contains("status: done") && !second.contains("status: started"));
        assert_eq!(second.matches(SECTION_BEGIN).count(), 1);
    }

    #[test]
    fn stray_section_markers_lose_no_text() {
        for current in [
            format!("keep {SECTION_BEGIN} this and that"),
            format!("keep {SECTION_END} this {SECTION_BEGIN} too"),
            format!("{SECTION_END}{SECTION_BEGIN}"),
        ] {
            let out = compose(DescriptionMode::Section, &current, "agent", M);
            assert!(
                out.starts_with(current.trim_end()),
                "{current:?} became {out:?}"
            );
            assert!(out.ends_with(&format!("agent\n\n{M}\n{SECTION_END}")));
        }
    }

    #[test]
    fn previous_bodies_are_kept_whole_or_as_a_digest() {
        let small = previous_body("human text");
        assert_eq!(small.body.as_deref(), Some("human text"));
        assert_eq!(small.bytes, 10);
        // Control characters take six bytes each in JSON.
        let big = "\u{1}".repeat(MAX_PREVIOUS_BODY_BYTES / 6 + 1);
        let digest = previous_body(&big);
        assert_eq!(digest.body, None);
        assert_eq!(digest.sha256, sha256_hex(big.as_bytes()));
        assert_eq!(digest.bytes, big.len() as u64);
    }

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
    }
}
