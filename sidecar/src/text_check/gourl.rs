//! URLs read the way Go's `net/url` reads them, which is how the forge
//! reads every link and autolink it looks at for references.
//!
//! Only what decides a reference is modelled: where the scheme, the
//! authority (user info and host), the path, the query and the fragment
//! begin and end, and the *escaped path* Go hands back
//! (`URL.EscapedPath`): the path as written when every byte of it may stand
//! unescaped in a path (percent escapes included), otherwise the decoded
//! path escaped again. Where Go would refuse a URL (a control byte, a bad
//! percent escape, an invalid host or port) the checker reads it anyway:
//! reading more than the forge never lets a reference through.

/// The parts of a URL that decide whether it names an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoUrl<'a> {
    /// The scheme in lower case (`http`), empty when there is none.
    pub scheme: String,
    /// The authority (`user@host:port`) when the URL has one (`//...`).
    pub authority: Option<&'a str>,
    /// The path as written (before the query and fragment).
    pub path: &'a str,
}

/// Split `raw` as `url.Parse` does. `None` for an opaque URL
/// (`mailto:x`, `http:a/b`): Go gives it no path.
pub fn parse(raw: &str) -> Option<GoUrl<'_>> {
    // The fragment goes first, then the query.
    let raw = raw.split_once('#').map_or(raw, |(u, _)| u);
    let (scheme, rest) = split_scheme(raw);
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    if !scheme.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let (authority, path) =
        if rest.starts_with("//") && (!scheme.is_empty() || !rest.starts_with("///")) {
            let after = &rest[2..];
            match after.find('/') {
                Some(i) => (Some(&after[..i]), &after[i..]),
                None => (Some(after), ""),
            }
        } else {
            (None, rest)
        };
    Some(GoUrl {
        scheme: scheme.to_ascii_lowercase(),
        authority,
        path,
    })
}

/// `(scheme, rest)`: a scheme is a letter, then letters, digits, `+`, `-`
/// or `.`, then `:`; anything else means there is none.
fn split_scheme(raw: &str) -> (&str, &str) {
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i > 0 => return (&raw[..i], &raw[i + 1..]),
            _ => return ("", raw),
        }
    }
    ("", raw)
}

/// What `URL.EscapedPath()` returns for a URL whose path is written `path`.
pub fn escaped_path(path: &str) -> String {
    if valid_encoded(path) {
        path.to_string()
    } else {
        escape_path(&unescape(path))
    }
}

/// The path decoded and escaped again, as Go returns it when some byte
/// of the path may not stand as written.
pub fn reescaped(path: &str) -> String {
    escape_path(&unescape(path))
}

/// Whether every byte may stand as written in an escaped path.
fn valid_encoded(path: &str) -> bool {
    path.bytes().all(|b| {
        matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'['
                | b']'
                | b'%'
        ) || !should_escape(b)
    })
}

/// Go's `shouldEscape(c, encodePath)`.
fn should_escape(b: u8) -> bool {
    !(b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_'
                | b'.'
                | b'~'
                | b'$'
                | b'&'
                | b'+'
                | b','
                | b'/'
                | b':'
                | b';'
                | b'='
                | b'@'
        ))
}

/// Percent escapes decoded; a malformed one is kept as written (Go would
/// refuse the URL).
fn unescape(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn escape_path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if should_escape(b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// The last four segments of an escaped path when the third is `issues`
/// or `pulls` (any case): `(owner, repo, pull, number)` as Go's segments,
/// unvalidated. This is what the forge writes in place of an autolink to
/// itself (`owner/repo#number`, or `!` for a pull request).
pub fn issue_tail(escaped: &str) -> Option<(&str, &str, bool, &str)> {
    let mut it = escaped.rsplitn(5, '/');
    let number = it.next()?;
    let kind = it.next()?;
    let repo = it.next()?;
    let owner = it.next()?;
    // A fifth piece must exist: the path has a `/` before the owner.
    it.next()?;
    let pull = if kind.eq_ignore_ascii_case("pulls") {
        true
    } else if kind.eq_ignore_ascii_case("issues") {
        false
    } else {
        return None;
    };
    Some((owner, repo, pull, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Go's `net/url` returns for each input (printed by a Go program):
    /// (input, scheme, authority, escaped path); `None` for no path.
    const GO: &[(&str, &str, Option<&str>, &str)] = &[
        (
            "http://gitea.test/a/b/issues/5",
            "http",
            Some("gitea.test"),
            "/a/b/issues/5",
        ),
        (
            "HTTP://'@//acme/w/issues/500",
            "http",
            Some("'@"),
            "//acme/w/issues/500",
        ),
        ("http:/a/b/issues/5", "http", None, "/a/b/issues/5"),
        ("//h/a/b/pulls/5?x#y", "", Some("h"), "/a/b/pulls/5"),
        ("///a/b/issues/5", "", None, "///a/b/issues/5"),
        ("/!5)/b/issues/5", "", None, "/!5)/b/issues/5"),
        ("/a/b/issues/%35", "", None, "/a/b/issues/%35"),
        ("/a\"/b/issues/%35", "", None, "/a%22/b/issues/5"),
        ("/a b/issues/5", "", None, "/a%20b/issues/5"),
        ("/\u{e9}/b/issues/5", "", None, "/%C3%A9/b/issues/5"),
        (
            "http://u:p@h:1/x/a/b/issues/+5",
            "http",
            Some("u:p@h:1"),
            "/x/a/b/issues/+5",
        ),
    ];

    #[test]
    fn urls_split_as_go_splits_them() {
        for (input, scheme, authority, escaped) in GO {
            let u = parse(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(
                (
                    u.scheme.as_str(),
                    u.authority,
                    escaped_path(u.path).as_str()
                ),
                (*scheme, *authority, *escaped),
                "{input}"
            );
        }
        assert_eq!(parse("mailto:a@b"), None);
        assert_eq!(parse("http:a/b/issues/5"), None);
    }

    #[test]
    fn the_tail_names_owner_repo_and_number() {
        assert_eq!(
            issue_tail("//!5)/b/issues/5"),
            Some(("!5)", "b", false, "5"))
        );
        assert_eq!(issue_tail("/a/b/PULLS/7"), Some(("a", "b", true, "7")));
        assert_eq!(issue_tail("a/b/issues/5"), None);
        assert_eq!(issue_tail("/a/b/wiki/5"), None);
    }
}
