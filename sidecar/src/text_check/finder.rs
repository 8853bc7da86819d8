//! The reference finder: keywords, references and mentions in one view of a
//! text (the Markdown-stripped pieces, or the raw text).
//!
//! It follows Gitea's reference grammar and is looser wherever Gitea is
//! strict, so that it finds at least what Gitea acts on:
//!
//! * a keyword may follow the start of the text or *any* character that is
//!   not a letter or digit (Gitea: whitespace, `(`, `[`);
//! * between the keyword and the reference, after an optional `:`, any run
//!   of spaces, tabs and markup characters (`*_~` `` ` `` `'"<>()[]\`)
//!   is allowed, also none (Gitea: exactly one space), and so is the text of
//!   a Markdown link whose destination is the reference
//!   (`closes [this](https://host/o/r/issues/5)`);
//! * a reference is `#N`, `!N`, `owner/repo#N`, `owner/repo!N` (names no
//!   longer than the forge allows: 40 characters for an owner, 100 for a
//!   repository; longer ones name nothing), or a URL
//!   of any host ending in `/owner/repo/issues/N` or `/pulls/N`; it ends
//!   where no letter or digit follows (Gitea wants whitespace or some
//!   punctuation there).
//!
//! Keywords match without regard to case, with Unicode case folding, as
//! Go's `(?i)` does: `cloſes` is `closes`.

use std::sync::Mutex;

use regex::{Captures, Regex};

/// Characters allowed between a keyword and its reference.
const SEPARATOR: &str = r#"[ \t*_~`'"<>()\[\]\\]*"#;
/// `#N`, `!N`, `owner/repo#N`, `owner/repo!N`.
const SHORT_REF: &str = r"(?:(?P<owner>[A-Za-z0-9_.-]{1,40})/(?P<repo>[A-Za-z0-9_.-]{1,100}))?[#!](?P<number>[0-9]{1,19})";
/// An issue or pull request URL on any host, with a scheme or starting
/// with `www.` (which Gitea's linkify turns into an `http://` link).
const URL_REF: &str = r#"(?:[A-Za-z][A-Za-z0-9+.-]*://|(?i:www)\.)[^ \t\r\n<>()\[\]`"']*?/(?P<url_owner>[A-Za-z0-9_.-]{1,40})/(?P<url_repo>[A-Za-z0-9_.-]{1,100})/(?i:issues|pulls)/(?P<url_number>[0-9]{1,19})"#;
/// A Markdown link's text before a URL reference, `[text](`.
const LINK_TEXT: &str = r"(?:\[[^\]\n]*\]\([ \t]*<?)?";

/// A reference as written: `owner/repo` (when named) and the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRef {
    /// `owner/repo` as written, when the reference names a repository.
    pub repo: Option<String>,
    /// The number.
    pub number: u64,
}

/// A keyword followed by a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAction {
    /// The keyword as written.
    pub keyword: String,
    /// What it refers to.
    pub target: RawRef,
    /// The keyword through the end of the reference, as written.
    pub excerpt: String,
}

/// The compiled patterns for one keyword list (cheap to clone).
#[derive(Debug, Clone)]
pub struct Finder {
    action: Regex,
    keyword_at_end: Regex,
    reference: Regex,
    mention: Regex,
    link_ref: Regex,
}

impl Finder {
    /// Patterns for these keywords (letters only, as Gitea accepts them).
    /// Compiled once per keyword list and process, then shared.
    pub fn new<'a>(keywords: impl IntoIterator<Item = &'a str>) -> Finder {
        static COMPILED: Mutex<Vec<(Vec<String>, Finder)>> = Mutex::new(Vec::new());
        let words: Vec<String> = keywords.into_iter().map(str::to_string).collect();
        let mut compiled = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, finder)) = compiled.iter().find(|(w, _)| *w == words) {
            return finder.clone();
        }
        let finder = Finder::compile(&words);
        compiled.push((words, finder.clone()));
        finder
    }

    fn compile(words: &[String]) -> Finder {
        let mut words: Vec<&str> = words.iter().map(String::as_str).collect();
        // Longer words first, so `closes` is not read as `close` + `s`.
        words.sort_by_key(|w| std::cmp::Reverse(w.len()));
        let words: Vec<String> = words.iter().map(|w| regex::escape(w)).collect();
        let keyword = if words.is_empty() {
            // No keywords: a pattern that never matches.
            r"(?P<keyword>[^\x00-\x{10FFFF}])".to_string()
        } else {
            format!("(?P<keyword>(?i:{}))", words.join("|"))
        };
        // Anything but an ASCII letter or digit: a letter of another script
        // before a keyword counts as a boundary too (fail closed).
        let boundary = r"(?:^|[^A-Za-z0-9])";
        let compile = |p: &str| Regex::new(p).expect("the finder's patterns compile");
        Finder {
            action: compile(&format!(
                "{boundary}{keyword}:?{SEPARATOR}(?:{LINK_TEXT}{URL_REF}|{SHORT_REF})"
            )),
            keyword_at_end: compile(&format!(r"{boundary}{keyword}:?{SEPARATOR}\z")),
            reference: compile(&format!(
                r"(?:^|[^A-Za-z0-9_./#!&@-])(?:{URL_REF}|{SHORT_REF})"
            )),
            mention: compile(
                r"(?:^|[^A-Za-z0-9_@./-])@(?P<name>[A-Za-z0-9_-][A-Za-z0-9_.-]{0,39}(?:/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99})?)",
            ),
            link_ref: compile(&format!(
                r"^{URL_REF}/?(?:[?#].*)?$|^/(?P<owner>[A-Za-z0-9_.-]{{1,40}})/(?P<repo>[A-Za-z0-9_.-]{{1,100}})/(?i:issues|pulls)/(?P<number>[0-9]{{1,19}})/?(?:[?#].*)?$"
            )),
        }
    }

    /// Every keyword + reference in `text`, in order.
    pub fn actions(&self, text: &str) -> Vec<RawAction> {
        self.action
            .captures_iter(text)
            .filter(|c| ends_at_boundary(text, c))
            .filter_map(|c| {
                let keyword = c.name("keyword")?;
                let whole = c.get(0)?;
                Some(RawAction {
                    keyword: keyword.as_str().to_string(),
                    target: raw_ref(&c)?,
                    excerpt: text[keyword.start()..whole.end()].to_string(),
                })
            })
            .collect()
    }

    /// The keyword that `text` ends with (after an optional `:` and
    /// separators), if any: what stands right before a link.
    pub fn keyword_at_end<'t>(&self, text: &'t str) -> Option<&'t str> {
        self.keyword_at_end
            .captures(text)
            .and_then(|c| c.name("keyword"))
            .map(|m| m.as_str())
    }

    /// Every reference in `text` (plain or URL), in order.
    pub fn references(&self, text: &str) -> Vec<RawRef> {
        self.reference
            .captures_iter(text)
            .filter(|c| ends_at_boundary(text, c))
            .filter_map(|c| raw_ref(&c))
            .collect()
    }

    /// The reference a link destination points at, if it is an issue or
    /// pull request URL (absolute, or a path from the forge's root).
    pub fn link_reference(&self, destination: &str) -> Option<RawRef> {
        self.link_ref
            .captures(destination.trim())
            .and_then(|c| raw_ref(&c))
    }

    /// Every `@user` and `@org/team` in `text`, without the `@`, in order.
    pub fn mentions<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
        self.mention
            .captures_iter(text)
            .filter_map(|c| c.name("name"))
            // A longer name than the forge allows is nobody.
            .filter(|m| {
                let mut after = text[m.end()..].chars();
                match after.next() {
                    Some(c) if name_char(c) => false,
                    Some('.') => !after.next().is_some_and(name_char),
                    _ => true,
                }
            })
            .map(|m| m.as_str().trim_end_matches(['.', '/']))
            .filter(|m| !m.is_empty())
            .collect()
    }
}

/// True when no letter or digit follows the match.
fn ends_at_boundary(text: &str, c: &Captures<'_>) -> bool {
    let end = c.get(0).map_or(0, |m| m.end());
    text[end..]
        .chars()
        .next()
        .is_none_or(|ch| !ch.is_alphanumeric())
}

fn raw_ref(c: &Captures<'_>) -> Option<RawRef> {
    let number = c
        .name("number")
        .or_else(|| c.name("url_number"))?
        .as_str()
        .parse()
        .ok()?;
    let owner = c.name("owner").or_else(|| c.name("url_owner"));
    let repo = c.name("repo").or_else(|| c.name("url_repo"));
    let repo = match (owner, repo) {
        (Some(o), Some(r)) => Some(format!("{}/{}", o.as_str(), r.as_str())),
        _ => None,
    };
    Some(RawRef { repo, number })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finder() -> Finder {
        Finder::new(["close", "closes", "fixes", "resolves", "reopen"])
    }

    fn actions(text: &str) -> Vec<String> {
        finder()
            .actions(text)
            .iter()
            .map(|a| {
                let target = match &a.target.repo {
                    Some(r) => format!("{r}#{}", a.target.number),
                    None => format!("#{}", a.target.number),
                };
                format!("{} {target}", a.keyword)
            })
            .collect()
    }

    #[test]
    fn keyword_after_any_non_alphanumeric() {
        for text in [
            "closes #5",
            ">closes #5",
            "*see*closes #5",
            "|closes #5|",
            "`ok`closes #5",
            "_closes #5_",
            "~~closes #5~~",
            "<b>closes #5</b>",
            "\u{200b}closes #5",
        ] {
            assert_eq!(actions(text), ["closes #5"], "{text:?}");
        }
        assert!(actions("unclosed #5; prefixes #5; closes#5x").is_empty());
    }

    #[test]
    fn separators_and_reference_forms() {
        assert_eq!(actions("Closes: #5"), ["Closes #5"]);
        assert_eq!(actions("closes **#5**"), ["closes #5"]);
        assert_eq!(actions("closes (#5)"), ["closes #5"]);
        assert_eq!(actions("FIXES Acme/Other!7."), ["FIXES Acme/Other#7"]);
        assert_eq!(
            actions("resolves <https://h.example/git/acme/other/pulls/9#x>"),
            ["resolves acme/other#9"]
        );
        assert_eq!(
            actions("closes www.h.example/acme/other/issues/9."),
            ["closes acme/other#9"]
        );
        assert_eq!(
            actions("closes [this one](http://host/acme/widgets/issues/500)"),
            ["closes acme/widgets#500"]
        );
        // Go's case folding: long s and the Kelvin sign.
        assert_eq!(actions("clo\u{17f}es #5"), ["clo\u{17f}es #5"]);
        // A keyword on one line and the reference on the next is not an action.
        assert!(actions("closes\n#5").is_empty());
    }

    #[test]
    fn references_and_mentions() {
        let f = finder();
        let refs: Vec<_> = f
            .references("see #5, (o/r#6) x#7 https://h/a/b/issues/8 &#9; a/b/c#10")
            .into_iter()
            .map(|r| (r.repo, r.number))
            .collect();
        assert_eq!(
            refs,
            [(None, 5), (Some("o/r".into()), 6), (Some("a/b".into()), 8)]
        );
        assert_eq!(
            f.mentions("hi @alice, @org/team. mail a@b.c (@bob)"),
            ["alice", "org/team", "bob"]
        );
        assert_eq!(
            f.link_reference("/acme/widgets/issues/3?x=1")
                .map(|r| r.number),
            Some(3)
        );
        assert_eq!(f.link_reference("https://h/acme/widgets/wiki/3"), None);
        assert_eq!(f.keyword_at_end("see it, closes "), Some("closes"));
        assert_eq!(f.keyword_at_end("foreclose "), None);
        let long = "a".repeat(41);
        assert_eq!(f.references(&format!("{long}/r#5")), []);
        assert!(f.mentions(&format!("@{long} @{long}.x")).is_empty());
        assert_eq!(f.mentions(&format!("@{}.", &long[1..])), [&long[1..]]);
    }
}
