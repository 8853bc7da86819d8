//! Other spellings of the same text: HTML entities decoded, and Unicode
//! folded to the ASCII it imitates.
//!
//! Gitea matches keywords with Go's case-insensitive regular expressions,
//! which already treat `ſ` (long s) as `s` and `K` (Kelvin sign) as `k`; the
//! finder's own case-insensitive match does the same. Beyond what Gitea
//! reads, the checker also refuses texts that only *look* like an action:
//! invisible characters inside a keyword, look-alike letters from other
//! scripts, full-width signs, non-ASCII spaces. Such a text has no honest
//! use next to a closing keyword, and a future renderer or forge version
//! that normalises it would act on it.

use std::borrow::Cow;

use unicode_general_category::{GeneralCategory, get_general_category};

/// `text` with its HTML entities (`&#99;`, `&num;`, `&nbsp;`) decoded, as a
/// browser would show them; borrowed when there are none. Gitea's stripper
/// writes text nodes as they stand in the source, so it reads `&#99;loses`
/// undecoded; the checker decodes anyway, because a reader, and any
/// renderer that decodes first, sees `closes`.
pub fn decode_entities(text: &str) -> Cow<'_, str> {
    if text.contains('&') {
        html_escape::decode_html_entities(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// `text` folded towards ASCII: invisible (default-ignorable) characters
/// and combining marks removed, every other space character made a plain
/// space, and each non-ASCII character that is confusable with ASCII
/// (Unicode's UTS #39 skeleton: Cyrillic `о`, Greek `ο`, full-width `＃`,
/// mathematical letters, ...) replaced by the ASCII it imitates. ASCII is
/// kept as it is, so digits and punctuation keep their meaning. `None` when
/// nothing changes.
pub fn fold_unicode(text: &str) -> Option<String> {
    if text.is_ascii() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut skeleton = String::new();
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
            continue;
        }
        if c.is_whitespace() {
            out.push(' ');
            continue;
        }
        skeleton.clear();
        skeleton.extend(
            unicode_security::skeleton(c.encode_utf8(&mut [0; 4])).filter(|c| !is_mark(*c)),
        );
        if skeleton.is_empty() || is_mark(c) {
            // Invisible (zero-width space, joiners, bidi controls, soft hyphen, ...) or a mark.
            continue;
        }
        if skeleton.is_ascii() {
            out.push_str(&skeleton);
        } else {
            out.push(c);
        }
    }
    (out != text).then_some(out)
}

fn is_mark(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::NonspacingMark
            | GeneralCategory::EnclosingMark
            | GeneralCategory::SpacingMark
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_decoded() {
        assert_eq!(
            decode_entities("&#99;loses &num;5&nbsp;x"),
            "closes #5\u{a0}x"
        );
        assert!(matches!(decode_entities("no entity"), Cow::Borrowed(_)));
    }

    #[test]
    fn look_alikes_and_invisibles_fold_to_ascii() {
        // Cyrillic с and о, zero-width space, full-width number sign and digit, no-break space.
        assert_eq!(
            fold_unicode("\u{441}l\u{43e}\u{200b}ses\u{a0}\u{ff03}\u{ff15}").as_deref(),
            Some("closes #5")
        );
        // Combining marks and bidi controls vanish; ASCII stays as written.
        assert_eq!(
            fold_unicode("clo\u{301}ses\u{202e} #10").as_deref(),
            Some("closes #10")
        );
        assert_eq!(fold_unicode("closes #10 l1O0"), None);
        // A letter with no ASCII look-alike stays.
        assert_eq!(fold_unicode("schließt #5").as_deref(), None);
    }
}
