//! Gitea's closing and reopening keywords: finds the references in a text
//! that would close (or reopen) an issue when the pull request merges.
//!
//! Gitea recognises, case-insensitively, `close`, `closes`, `closed`, `fix`,
//! `fixes`, `fixed`, `resolve`, `resolves`, `resolved` (closing) and
//! `reopen`, `reopens`, `reopened` (reopening), at the start of the text or
//! after whitespace, `(` or `[`, optionally followed by `:`, then whitespace
//! and a reference: `#N`, `!N`, `owner/repo#N`, or an issue/PR URL
//! `https://host/owner/repo/issues/N` (or `/pulls/N`). This matcher accepts
//! any amount of whitespace where Gitea wants one space, so it finds at least
//! what Gitea acts on.

use std::sync::LazyLock;

use regex::Regex;

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:^|[\s(\[])(?P<kw>close[sd]?|fix(?:e[sd])?|resolve[sd]?|reopen(?:s|ed)?):?\s+(?:(?P<repo>[\w.-]+/[\w.-]+)?[#!](?P<num>\d+)|https?://\S+?/(?P<urepo>[\w.-]+/[\w.-]+)/(?:issues|pulls)/(?P<unum>\d+))",
    )
    .expect("the closing-reference pattern compiles")
});

/// A closing or reopening reference found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosingRef {
    /// The keyword as written, e.g. `Fixes`.
    pub keyword: String,
    /// `owner/repo` when the reference names a repository.
    pub repo: Option<String>,
    /// The referenced number.
    pub number: u64,
}

impl ClosingRef {
    /// True when this reference is to `number` in `owner/repo`.
    pub fn is_to(&self, owner: &str, repo: &str) -> bool {
        self.repo
            .as_deref()
            .is_none_or(|r| r.eq_ignore_ascii_case(&format!("{owner}/{repo}")))
    }
}

impl ClosingRef {
    /// What the reference points at: `#500` or `owner/repo#500`.
    pub fn target(&self) -> String {
        match &self.repo {
            Some(repo) => format!("{repo}#{}", self.number),
            None => format!("#{}", self.number),
        }
    }
}

impl std::fmt::Display for ClosingRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.keyword, self.target())
    }
}

/// Every closing or reopening reference in `text`, in order.
pub fn closing_refs(text: &str) -> Vec<ClosingRef> {
    REFERENCE
        .captures_iter(text)
        .filter_map(|c| {
            let number = c
                .name("num")
                .or_else(|| c.name("unum"))?
                .as_str()
                .parse()
                .ok()?;
            let repo = c
                .name("repo")
                .or_else(|| c.name("urepo"))
                .map(|m| m.as_str().to_string());
            Some(ClosingRef {
                keyword: c["kw"].to_string(),
                repo,
                number,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<String> {
        closing_refs(text).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn finds_every_keyword_in_any_case() {
        for kw in [
            "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves",
            "resolved", "reopen", "reopens", "reopened",
        ] {
            for written in [
                kw.to_string(),
                kw.to_uppercase(),
                format!("{}{}", kw[..1].to_uppercase(), &kw[1..]),
            ] {
                assert_eq!(
                    found(&format!("This {written} #500.")),
                    [format!("{written} #500")],
                    "{written}"
                );
            }
        }
    }

    #[test]
    fn finds_reference_forms() {
        assert_eq!(found("Fixes: #500"), ["Fixes #500"]);
        assert_eq!(
            found("resolves acme/widgets#500"),
            ["resolves acme/widgets#500"]
        );
        assert_eq!(found("(closes other/repo#3)"), ["closes other/repo#3"]);
        assert_eq!(
            found("closes https://git.example/acme/widgets/issues/500"),
            ["closes acme/widgets#500"]
        );
        assert_eq!(
            found("fixes !18 and\nCloses   #19"),
            ["fixes #18", "Closes #19"]
        );
    }

    #[test]
    fn plain_mentions_are_not_closing() {
        assert!(
            found("see #500, related to #501; prefix#500; unclosed #500; fixesx #1").is_empty()
        );
        assert!(found("closes nothing").is_empty());
    }

    #[test]
    fn same_repo_check() {
        let r = &closing_refs("closes Acme/Widgets#5")[0];
        assert!(r.is_to("acme", "widgets"));
        assert!(!closing_refs("closes acme/other#5")[0].is_to("acme", "widgets"));
        assert!(closing_refs("closes #5")[0].is_to("acme", "widgets"));
    }
}
