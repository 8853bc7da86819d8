//! Subjects and headers of shipped messages: what a consumer filters on.
//!
//! ```text
//! <prefix>.<owner>.<repo>.<issue>.<session>.<kind>
//! forge.acme.widgets.17.20261125T120000%2E000Z-0a1b2c.op
//! ```
//!
//! Every token is made subject-safe by one reversible rule ([`token`]):
//! ASCII letters, digits, `-` and `_` stay; every other byte (`.`, `*`,
//! `>`, `%`, whitespace, non-ASCII, ...) becomes `%` and two upper-case hex
//! digits; an empty or unknown value is `%`. So `my.repo` is `my%2Erepo`
//! and a session id's `.` is `%2E`. `owner`, `repo` and `issue` come from
//! the session's `session_start`; `kind` is the event kind or `stale` /
//! `recovered` for liveness notices.

use std::fmt::Write;

/// Header: the queue directory, as given to the shipper.
pub const DIR: &str = "Forge-Dir";
/// Header: the shipper's host name.
pub const HOST: &str = "Forge-Host";
/// Header: the session id.
pub const SESSION: &str = "Forge-Session";
/// Header: the event's seq (absent on liveness notices).
pub const SEQ: &str = "Forge-Seq";
/// Header: the event kind, or `stale` / `recovered`.
pub const KIND: &str = "Forge-Kind";

/// The subject-safe form of one name (see the module documentation).
pub fn token(name: &str) -> String {
    if name.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What a session's subjects are made of: its `session_start`'s scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Repository owner.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// The assigned issue.
    pub issue: Option<u64>,
}

/// `<prefix>.<owner>.<repo>.<issue>.<session>.<kind>`; an unknown scope
/// (no `session_start` found) maps to `%` tokens.
pub fn subject(prefix: &str, scope: Option<&Scope>, session: Option<&str>, kind: &str) -> String {
    let (owner, repo, issue) = match scope {
        Some(s) => (
            token(&s.owner),
            token(&s.repo),
            s.issue.map_or_else(|| "%".to_string(), |n| n.to_string()),
        ),
        None => ("%".into(), "%".into(), "%".into()),
    };
    format!(
        "{prefix}.{owner}.{repo}.{issue}.{}.{}",
        token(session.unwrap_or("")),
        token(kind)
    )
}

/// The filter for every message of one session.
pub fn session_filter(prefix: &str, session: &str) -> String {
    format!("{prefix}.*.*.*.{}.*", token(session))
}

/// Check a subject prefix: one or more non-empty tokens of letters, digits,
/// `-` and `_`, separated by `.`.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "subject prefix '{}' must be dot-separated tokens of letters, digits, '-' and '_'",
            crate::render::escape(prefix)
        ))
    }
}

/// A header value: control characters escaped (a header cannot hold a line
/// break).
pub fn header_value(s: &str) -> String {
    crate::render::escape(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_single_safe_tokens() {
        assert_eq!(token("acme"), "acme");
        assert_eq!(token("my.repo"), "my%2Erepo");
        assert_eq!(token("a*b>c d%"), "a%2Ab%3Ec%20d%25");
        assert_eq!(token("é"), "%C3%A9");
        assert_eq!(token(""), "%");
        for hostile in ["a.b", "*", ">", "x y", "a\nb", "%2E"] {
            let t = token(hostile);
            assert!(
                !t.contains(['.', '*', '>', ' ', '\n']),
                "{hostile:?} -> {t}"
            );
        }
        // Reversible: distinct names give distinct tokens.
        assert_ne!(token("a.b"), token("a%2Eb"));
    }

    #[test]
    fn subjects_carry_scope_session_and_kind() {
        let scope = Scope {
            owner: "acme".into(),
            repo: "web.site".into(),
            issue: Some(17),
        };
        assert_eq!(
            subject(
                "forge",
                Some(&scope),
                Some("20261125T120000.000Z-0a1b2c"),
                "op"
            ),
            "forge.acme.web%2Esite.17.20261125T120000%2E000Z-0a1b2c.op"
        );
        assert_eq!(subject("f.x", None, None, "stale"), "f.x.%.%.%.%.stale");
        assert_eq!(
            session_filter("forge", "20261125T120000.000Z-0a1b2c"),
            "forge.*.*.*.20261125T120000%2E000Z-0a1b2c.*"
        );
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("forge").is_ok());
        assert!(check_prefix("fleet.forge_1").is_ok());
        for bad in ["", "a..b", "a.*", ">", "a b", ".a"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }
}
