//! What a read returns besides the forge's data: the notices that say what
//! the sidecar did to the text before the agent saw it, and the paging of
//! long lists (`read_comments`, `read_reviews`).
//!
//! A read never drops content silently. Every text the agent gets is
//! cleaned of hidden characters, cut when over its size cap, or withheld
//! when its author is not trusted; each such change is one [`Notice`] in
//! the result. A list answer carries the total and a cursor for the rest.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::types::{Comment, Review};

/// Most items `limit` may ask for in one page.
pub const MAX_PAGE_ITEMS: u32 = 100;
/// Longest cursor accepted, in bytes.
pub const MAX_CURSOR_LEN: usize = 128;

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// Unicode tag characters (U+E0000..U+E007F): invisible, yet read by a
    /// language model as ASCII. `count`: how many.
    TagCharacters,
    /// Bidirectional controls (U+202A..U+202E, U+2066..U+2069, U+200E,
    /// U+200F, U+061C): they reorder what a reader sees. `count`: how many.
    BidiControls,
    /// Zero-width and other invisible format or control characters
    /// (U+200B..U+200D, U+2060..U+2064, U+FEFF, U+00AD, variation
    /// selectors, C0/C1 controls other than tab and newline, ...).
    /// `count`: how many.
    InvisibleCharacters,
    /// The text was over its size cap. `count`: its full size in bytes.
    TooLong,
    /// The author is not trusted (`FORGE_READ_TRUST=collaborators`), or
    /// whether they are could not be checked. `count`: 1.
    UntrustedAuthor,
    /// Items did not fit in the answer's size (inline comments of a review
    /// too large for one answer). `count`: how many were left out.
    TooLargeForAnswer,
}

impl NoticeKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::TagCharacters => "tag_characters",
            NoticeKind::BidiControls => "bidi_controls",
            NoticeKind::InvisibleCharacters => "invisible_characters",
            NoticeKind::TooLong => "too_long",
            NoticeKind::UntrustedAuthor => "untrusted_author",
            NoticeKind::TooLargeForAnswer => "too_large_for_answer",
        }
    }
}

/// What the sidecar did about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeAction {
    /// The characters were removed (`FORGE_READ_INVISIBLE=strip`).
    Stripped,
    /// Each character was replaced by a visible marker such as `[U+E0041]`
    /// (`FORGE_READ_INVISIBLE=mark`).
    Marked,
    /// The characters were left in (`FORGE_READ_INVISIBLE=keep`).
    Kept,
    /// The text was cut at the cap; it ends with a marker giving its full size.
    Cut,
    /// The text was replaced by a one-line placeholder saying why.
    Withheld,
    /// The items were not included in this answer.
    LeftOut,
}

impl NoticeAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeAction::Stripped => "stripped",
            NoticeAction::Marked => "marked",
            NoticeAction::Kept => "kept",
            NoticeAction::Cut => "cut",
            NoticeAction::Withheld => "withheld",
            NoticeAction::LeftOut => "left_out",
        }
    }
}

/// One change the sidecar made to (or found in) a text before the agent saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Notice {
    /// The field, as a path in the result: `title`, `body`,
    /// `comments[id=5001].body`, `reviews[id=900].comments[id=80001].diff_hunk`.
    pub field: String,
    /// What was found.
    pub what: NoticeKind,
    /// How many (see [`NoticeKind`] for the unit).
    pub count: u64,
    /// What was done.
    pub action: NoticeAction,
}

/// The order of a page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Oldest first, as the forge lists them (the default).
    #[default]
    OldestFirst,
    /// Newest first.
    NewestFirst,
}

impl Order {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::OldestFirst => "oldest_first",
            Order::NewestFirst => "newest_first",
        }
    }
}

/// How many items a page may hold: 1 to [`MAX_PAGE_ITEMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct PageLimit(#[schemars(range(min = 1, max = 100))] u32);

impl PageLimit {
    /// `Some` for 1 to [`MAX_PAGE_ITEMS`].
    pub fn new(n: u32) -> Option<PageLimit> {
        (1..=MAX_PAGE_ITEMS).contains(&n).then_some(PageLimit(n))
    }

    /// The limit.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for PageLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LimitVisitor;
        const WANT: &str =
            "a limit from 1 to 100; leave `limit` out to get as many as fit in one answer";
        impl Visitor<'_> for LimitVisitor {
            type Value = PageLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(WANT)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PageLimit, E> {
                u32::try_from(v)
                    .ok()
                    .and_then(PageLimit::new)
                    .ok_or_else(|| E::custom(format!("limit {v} is out of range, expected {WANT}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PageLimit, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("limit {v} is negative, expected {WANT}"))),
                }
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<PageLimit, E> {
                Err(E::custom(format!(
                    "limit {v} is out of range, expected {WANT}"
                )))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<PageLimit, E> {
                Err(E::custom(format!(
                    "limit {v} is out of range, expected {WANT}"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PageLimit, E> {
                Err(E::custom(format!(
                    "limit {v} is not a whole number, expected {WANT}"
                )))
            }
        }
        d.deserialize_u64(LimitVisitor)
    }
}

/// Where the next page starts: an opaque string from a previous answer's
/// `next_cursor`, valid for the same number, list and session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Cursor(#[schemars(length(min = 1, max = 128))] String);

impl Cursor {
    /// `Some` for 1 to [`MAX_CURSOR_LEN`] characters of `A-Z a-z 0-9 . _ -`.
    pub fn new(s: impl Into<String>) -> Option<Cursor> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= MAX_CURSOR_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then_some(Cursor(s))
    }

    /// The cursor text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Cursor::new(s).ok_or_else(|| {
            de::Error::custom(
                "this is not a cursor of this sidecar; send the `next_cursor` of the previous \
                 answer unchanged, or leave `cursor` out to start from the first page",
            )
        })
    }
}

/// Parameters of `read_comments` and `read_reviews`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Issue or pull request number (any in the repository).
    pub number: crate::IssueNumber,
    /// Most items in this answer (1 to 100). Left out: as many as fit in
    /// the answer's size limit. Fewer may come back when they are large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<PageLimit>,
    /// The `next_cursor` of the previous answer, to read the next page.
    /// Left out: the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// `oldest_first` (default) or `newest_first`. With a cursor, the
    /// cursor's order; giving another one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
}

/// Result of `read_comments`: one page of the comments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommentPage {
    /// The comments of this page, in `order`.
    pub comments: Vec<Comment>,
    /// How many comments the issue or pull request has in all.
    pub total: u64,
    /// How many come after this page (in `order`).
    pub remaining: u64,
    /// The order of this page.
    pub order: Order,
    /// Pass it as `cursor` to read the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// What the sidecar changed in the texts of this page.
    pub notices: Vec<Notice>,
}

/// Result of `read_reviews`: one page of the reviews of a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewPage {
    /// The reviews of this page, in `order`, each with its inline comments.
    pub reviews: Vec<Review>,
    /// How many reviews the pull request has in all.
    pub total: u64,
    /// How many come after this page (in `order`).
    pub remaining: u64,
    /// The order of this page.
    pub order: Order,
    /// Pass it as `cursor` to read the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// What the sidecar changed in the texts of this page.
    pub notices: Vec<Notice>,
}

/// What an `op` event records about the texts a read returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReadReport {
    /// Hidden characters (tag, bidi, invisible) found in the texts returned.
    pub hidden_chars: u64,
    /// What was done with them: `stripped`, `marked` or `kept`.
    pub hidden_action: String,
    /// Texts cut at their size cap.
    pub cut: u64,
    /// Texts (titles, bodies, comments, reviews) withheld from untrusted authors.
    pub withheld: u64,
    /// Distinct authors whose texts were withheld (at most 16 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld_from: Vec<String>,
    /// Collaborator checks that failed (then the text was withheld).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trust_check_failures: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ReadReport {
    /// True when nothing was found or changed.
    pub fn is_empty(&self) -> bool {
        self.hidden_chars == 0 && self.cut == 0 && self.withheld == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(json: &str) -> Result<PageLimit, String> {
        serde_json::from_str::<PageLimit>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn limits_outside_one_to_a_hundred_are_refused_clearly() {
        assert_eq!(limit("1").unwrap().get(), 1);
        assert_eq!(limit("100").unwrap().get(), 100);
        for (bad, says) in [
            ("0", "out of range"),
            ("101", "out of range"),
            ("-3", "negative"),
            ("4294967297", "out of range"),
            ("1e30", "not a whole number"),
            ("2.5", "not a whole number"),
        ] {
            let err = limit(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains("1 to 100"), "{bad}: {err}");
        }
        assert!(limit("\"5\"").is_err());
    }

    #[test]
    fn cursors_are_short_and_plain() {
        assert!(Cursor::new("c1.17.o.5001.abcdef").is_some());
        assert!(Cursor::new("").is_none());
        assert!(Cursor::new("a b").is_none());
        assert!(Cursor::new("x".repeat(MAX_CURSOR_LEN + 1)).is_none());
        let err = serde_json::from_str::<Cursor>(&format!("\"{}\"", "x".repeat(1 << 20)))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 300, "{err}");
        assert!(err.contains("next_cursor"), "{err}");
    }

    #[test]
    fn page_params_default_to_the_first_page() {
        let p: PageParams = serde_json::from_str(r#"{"number": 17}"#).unwrap();
        assert_eq!((p.limit, p.cursor, p.order), (None, None, None));
        let err = serde_json::from_str::<PageParams>(r#"{"number": 17, "page": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `page`"), "{err}");
    }
}
