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
    // Gitea does not read code blocks (nor code spans) for references.
    let mut in_code_block = false;
    for (event, range) in Parser::new_ext(source, options).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(_)) => {
                in_code_block = true;
                joined = false;
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                joined = false;
            }
            Event::Text(text) => {
                if in_autolink == 0 && !in_code_block {
                    piece(&mut out.text, &text, joined);
                    joined = true;
                }
            }
            Event::Start(Tag::Link {
                link_type: LinkType::Autolink | LinkType::Email,
                dest_url,
                ..
            }) => {
                // Gitea writes an autolink in place, right after the text before it.
                out.text.push_str(&dest_url);
                push_link(&mut out.links, &dest_url, range);
                in_autolink += 1;
                joined = true;
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                push_link(&mut out.links, &dest_url, range);
                joined = false;
            }
            Event::End(TagEnd::Link) if in_autolink > 0 => {
                in_autolink -= 1;
                joined = true;
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                html_text(&mut out.text, &html);
                joined = false;
            }
            Event::SoftBreak => {
                out.text.push('\n');
                joined = true;
            }
            // Gitea's stripper drops a hard line break (and the spaces that
            // make it): the two lines read as one word where they meet.
            Event::HardBreak => joined = true,
            // Code is not read for references; every other boundary starts a new piece.
            _ => joined = false,
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
}
