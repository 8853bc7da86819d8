//! The Markdown view of a text: what is left once the Markdown is parsed,
//! laid out the way Gitea's Markdown stripper lays it out before it looks
//! for references.
//!
//! Gitea parses the text (GFM: tables, strike-through, task lists,
//! autolinks; footnotes, definition lists, heading attributes), writes out
//! the text nodes, and starts a new line wherever one piece of text does not
//! directly continue the previous one: so `>closes #5`, `*see*closes #5`, a
//! table cell `|fixes #5|` and `` `ok`resolves #5 `` each become a line that
//! begins with the keyword. Link destinations are collected apart from the
//! text; an autolink is written in place.
//!
//! Where the two differ this view shows *more* than Gitea's: the text of
//! links, image alt text, the text inside inline and block HTML (entities
//! decoded, tags as line breaks) and image destinations are all included,
//! and a hard line break joins its two lines with nothing between
//! them, as Gitea's stripper joins them (inside block quotes and lists too).
//!
//! Gitea writes an autolink to itself in place right after whatever it
//! wrote last, across everything it writes nothing for: code spans, links
//! (it skips their text), images without alt text, HTML, code blocks and
//! the ends of paragraphs, lists and quotes. So `fixes `x`https://...` and
//! `fixes [a](b)` + a new paragraph starting with a URL both read as
//! `fixes owner/repo#N`. [`Stripped::joins`] holds each such meeting: the
//! text last written (when it ends in a space) followed by the URL, for
//! every URL that starts a piece of text or is an autolink (`pulldown-cmark`
//! does not find bare URLs, so every piece that starts like one counts).

use std::ops::Range;

use pulldown_cmark::{Event, LinkType, Options, Parser, Tag, TagEnd};

/// A link or image destination and where its Markdown starts in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The destination URL, as the parser resolved it.
    pub destination: String,
    /// Byte offset of the link's first character (`[` or `!`) in the source.
    pub start: usize,
}

/// The stripped text and the link destinations.
#[derive(Debug, Default)]
pub struct Stripped {
    /// The text pieces, a new line between pieces that are not contiguous.
    pub text: String,
    /// Link and image destinations, in order.
    pub links: Vec<Link>,
    /// The text written last before a URL that the forge may write in
    /// place right after it, followed by that URL (up to whitespace).
    pub joins: Vec<String>,
}

/// The bytes of the last written text kept for [`Stripped::joins`]: more
/// than any keyword, its colon and its separators.
const TAIL_BYTES: usize = 256;

/// What the forge wrote last, as far as an autolink after it is concerned.
#[derive(Default)]
struct Tail {
    /// The end of the run of text written last.
    text: String,
    /// The last event wrote text: the next text continues the same run.
    continues: bool,
}

impl Tail {
    /// Text the forge writes: it continues the run or starts a new one.
    fn write(&mut self, text: &str) {
        if !self.continues {
            self.text.clear();
        }
        self.text.push_str(text);
        if self.text.len() > TAIL_BYTES {
            let mut cut = self.text.len() - TAIL_BYTES;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
        }
        self.continues = true;
    }

    /// A URL the forge may write in place after the run: the run and the
    /// URL, when the run ends in whitespace (the forge needs a space
    /// between a keyword and its reference).
    fn join(&self, joins: &mut Vec<String>, url: &str) {
        if self.text.ends_with(char::is_whitespace) {
            let url = url.split(char::is_whitespace).next().unwrap_or("");
            joins.push(format!("{}{url}", self.text));
        }
    }
}

/// Whether `text` starts like a URL the forge's linkify may find: a
/// scheme and `:`, or `www.`.
fn starts_like_url(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() >= 4 && bytes[..4].eq_ignore_ascii_case(b"www.") {
        return true;
    }
    if !bytes.first().is_some_and(u8::is_ascii_alphabetic) {
        return false;
    }
    let end = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')))
        .unwrap_or(bytes.len());
    bytes.get(end) == Some(&b':')
}

/// Parse `source` as Markdown with the extensions Gitea enables.
pub fn strip(source: &str) -> Stripped {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_DEFINITION_LIST
        | Options::ENABLE_HEADING_ATTRIBUTES;
    let mut out = Stripped::default();
    // True while the next text directly continues the previous piece.
    let mut joined = false;
    // Inside an autolink the text repeats the destination, already written.
    let mut in_autolink = 0usize;
    // Inside a link the forge writes nothing of its text.
    let mut in_link = 0usize;
    // Gitea does not read code blocks (nor code spans) for references.
    let mut in_code_block = false;
    let mut tail = Tail::default();
    // The heading being read has an attribute block (`## t {#id}`).
    let mut heading_attrs = false;
    for (event, range) in Parser::new_ext(source, options).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading {
                ref id,
                ref classes,
                ref attrs,
                ..
            }) => {
                heading_attrs = id.is_some() || !classes.is_empty() || !attrs.is_empty();
                joined = false;
                tail.continues = false;
            }
            // The forge keeps the spaces before a heading's attribute block
            // in its text, where this parser trims them: the run may end in
            // a space.
            Event::End(TagEnd::Heading(_)) if std::mem::take(&mut heading_attrs) => {
                if tail.continues {
                    tail.write(" ");
                }
                joined = false;
                tail.continues = false;
            }
            Event::Start(Tag::CodeBlock(_)) => {
                in_code_block = true;
                joined = false;
                tail.continues = false;
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                joined = false;
                tail.continues = false;
            }
            Event::Text(text) => {
                if in_autolink == 0 && !in_code_block {
                    piece(&mut out.text, &text, joined);
                    joined = true;
                    if in_link == 0 {
                        if !tail.continues && starts_like_url(&text) {
                            tail.join(&mut out.joins, &text);
                        }
                        tail.write(&text);
                    }
                }
            }
            Event::Start(Tag::Link {
                link_type: LinkType::Autolink | LinkType::Email,
                dest_url,
                ..
            }) => {
                // Gitea writes an autolink in place, right after the text before it.
                tail.join(&mut out.joins, &dest_url);
                tail.continues = false;
                out.text.push_str(&dest_url);
                push_link(&mut out.links, &dest_url, range);
                in_autolink += 1;
                joined = true;
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                push_link(&mut out.links, &dest_url, range);
                in_link += 1;
                joined = false;
                tail.continues = false;
            }
            Event::Start(Tag::Image { dest_url, .. }) => {
                push_link(&mut out.links, &dest_url, range);
                joined = false;
                tail.continues = false;
            }
            Event::End(TagEnd::Link) if in_autolink > 0 => {
                in_autolink -= 1;
                joined = true;
            }
            Event::End(TagEnd::Link) => {
                in_link = in_link.saturating_sub(1);
                joined = false;
                tail.continues = false;
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                html_text(&mut out.text, &html);
                joined = false;
                tail.continues = false;
            }
            Event::SoftBreak => {
                out.text.push('\n');
                joined = true;
                // Gitea writes a line end after text that ends a line.
                if tail.continues {
                    tail.text.clear();
                }
                tail.continues = false;
            }
            // Gitea's stripper drops a hard line break (and the spaces that
            // make it): the two lines read as one word where they meet.
            Event::HardBreak => joined = true,
            // Code is not read for references; every other boundary starts
            // a new piece (and writes nothing in the forge's reading).
            _ => {
                joined = false;
                tail.continues = false;
            }
        }
    }
    out
}

/// `source` with Markdown's backslash escapes removed (`\/` is `/`), as a
/// link destination reads them.
pub fn remove_backslash_escapes(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(next) = chars.peek()
            && next.is_ascii_punctuation()
        {
            continue;
        }
        out.push(c);
    }
    out
}

/// `source` with every hard line break (`\\` or two or more spaces
/// before a line end) and its line end removed.
pub fn join_hard_breaks(source: &str) -> String {
    if !source.contains("\\\n") && !source.contains("  \n") {
        return source.to_string();
    }
    let mut out = String::with_capacity(source.len());
    for line in source.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(body) if body.ends_with('\\') => out.push_str(&body[..body.len() - 1]),
            Some(body) if body.ends_with("  ") => out.push_str(body.trim_end_matches(' ')),
            _ => out.push_str(line),
        }
    }
    out
}

fn piece(out: &mut String, text: &str, joined: bool) {
    if !joined && !out.is_empty() {
        out.push('\n');
    }
    out.push_str(text);
}

fn push_link(links: &mut Vec<Link>, destination: &str, range: Range<usize>) {
    links.push(Link {
        destination: destination.to_string(),
        start: range.start,
    });
}

/// The text of an HTML fragment, one piece per run between tags, entities
/// decoded (Gitea ignores HTML; a browser shows this text).
fn html_text(out: &mut String, html: &str) {
    let mut rest = html;
    while !rest.is_empty() {
        let (text, after) = match rest.find('<') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !text.trim().is_empty() {
            piece(out, &super::fold::decode_entities(text), false);
        }
        rest = match after.find('>') {
            Some(i) => &after[i + 1..],
            None if after.is_empty() => "",
            // An unclosed `<`: keep the rest as text.
            None => {
                piece(out, &super::fold::decode_entities(&after[1..]), false);
                ""
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(source: &str) -> Vec<String> {
        strip(source).text.lines().map(str::to_string).collect()
    }

    #[test]
    fn separate_pieces_go_on_separate_lines() {
        assert_eq!(lines(">closes #5"), ["closes #5"]);
        assert_eq!(
            lines("Fixes the crash.\n\n*see*closes #5"),
            ["Fixes the crash.", "see", "closes #5"]
        );
        assert_eq!(lines("|a|\n|-|\n|fixes #5|"), ["a", "fixes #5"]);
        assert_eq!(lines("`ok`resolves #5"), ["resolves #5"]);
        assert_eq!(lines("- [x] closes #5"), ["closes #5"]);
        assert_eq!(lines("a[^1]\n\n[^1]: closes #5"), ["a", "closes #5"]);
        assert_eq!(lines("~~fixes #5~~ and **x**"), ["fixes #5", " and ", "x"]);
    }

    #[test]
    fn text_that_continues_stays_on_its_line() {
        assert_eq!(lines("closes &#35;5 and \\#6"), ["closes #5 and #6"]);
        // As Gitea strips it: the two lines meet with nothing between.
        assert_eq!(lines("closes\\\n#5"), ["closes#5"]);
        assert_eq!(lines("> fixes a/b  \n> !17"), ["fixes a/b!17"]);
        assert_eq!(lines("one\ntwo"), ["one", "two"]);
    }

    #[test]
    fn links_html_and_code() {
        let s = strip("closes [x](http://host/acme/widgets/issues/500) ![alt](/o/r/issues/2)");
        assert_eq!(
            s.links,
            [
                Link {
                    destination: "http://host/acme/widgets/issues/500".into(),
                    start: 7
                },
                Link {
                    destination: "/o/r/issues/2".into(),
                    start: 48
                },
            ]
        );
        assert_eq!(
            s.text.lines().collect::<Vec<_>>(),
            ["closes ", "x", " ", "alt"]
        );
        assert_eq!(
            lines("closes <http://h/o/r/issues/5>"),
            ["closes http://h/o/r/issues/5"]
        );
        assert_eq!(lines("<div>\n&#99;loses #5\n</div>"), ["closes #5"]);
        assert_eq!(lines("a <b>fixes</b> #5"), ["a ", "fixes", " #5"]);
        assert!(strip("```\nfixes #5\n```\n\n    fixes #6").text.is_empty());
    }

    #[test]
    fn autolinks_meet_the_text_written_before_them() {
        let joins = |s: &str| strip(s).joins;
        let url = "https://h//a/b/issues/5";
        for silent in [
            "`x`",
            "[t](u)",
            "![](u)",
            "<b>",
            "`x`\n\n```\ncode\n```\n\n",
            "[x](y)\n\n<div>\nwords\n</div>\n\n",
            "`x`\n- ",
        ] {
            assert_eq!(
                joins(&format!("fixes {silent}{url} more")),
                [format!("fixes {url}")],
                "{silent:?}"
            );
        }
        assert_eq!(
            joins(&format!("fixes `x`<{url}>")),
            [format!("fixes {url}")]
        );
        // A heading's attribute block leaves the spaces before it.
        assert_eq!(
            joins(&format!("## fixes  {{#id}}\n{url}")),
            [format!("fixes {url}")]
        );
        // Text written between, a line end after text, or no space: no meeting.
        for text in [
            format!("fixes *x*{url}"),
            format!("fixes\n`x`{url}"),
            format!("fixes\n\n{url}"),
            format!("fixes `x` {url}"),
        ] {
            assert!(
                joins(&text).iter().all(|j| !j.starts_with("fixes")),
                "{text:?}: {:?}",
                joins(&text)
            );
        }
    }
}
