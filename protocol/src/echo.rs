//! Bounded echo: how much of the caller's own text a message, a summary or
//! a log line may repeat.
//!
//! A hostile caller controls method names, param names and values; anything
//! that quotes them is cut here, so an error, an audit event or a log line
//! stays small whatever was sent. Quoted caller text is cut to
//! [`MAX_ECHO_CHARS`] characters; a whole error message or summary to
//! [`MAX_MESSAGE_CHARS`]. A cut text ends with [`CUT_MARK`].

use std::borrow::Cow;

/// Most characters of caller-supplied text quoted in a message.
pub const MAX_ECHO_CHARS: usize = 64;
/// Most characters of an error message or an `op` summary.
pub const MAX_MESSAGE_CHARS: usize = 512;
/// What a cut text ends with.
pub const CUT_MARK: &str = "… (cut)";

/// `s` cut to `max` characters (plus [`CUT_MARK`] when cut).
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}{CUT_MARK}", &s[..end])),
    }
}

/// Caller text as a message quotes it: at most [`MAX_ECHO_CHARS`] characters.
pub fn quote(s: &str) -> Cow<'_, str> {
    cut(s, MAX_ECHO_CHARS)
}

/// A parser's message with every span between backticks or double quotes
/// (where serde quotes the offending input: ``unknown field `x` ``,
/// `invalid type: string "x"`) cut to [`MAX_ECHO_CHARS`] characters.
pub fn quote_spans(msg: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut rest = msg;
    let mut changed = false;
    while let Some(open) = rest.find(['`', '"']) {
        let delim = &rest[open..=open];
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(delim) else {
            rest = after;
            break;
        };
        let span = &after[..close];
        let cut_span = quote(span);
        changed |= matches!(cut_span, Cow::Owned(_));
        out.push_str(&cut_span);
        out.push_str(delim);
        rest = &after[close + 1..];
    }
    if !changed {
        return Cow::Borrowed(msg);
    }
    out.push_str(&quote(rest));
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_unchanged() {
        assert!(matches!(cut("read_issue", 64), Cow::Borrowed("read_issue")));
        assert!(matches!(
            quote_spans("unknown field `owner`, expected `number`"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_and_marked() {
        let s = "é".repeat(100);
        let c = cut(&s, 64);
        assert_eq!(c, format!("{}{CUT_MARK}", "é".repeat(64)));
    }

    #[test]
    fn quoted_spans_are_cut_and_the_rest_kept() {
        let key = "k".repeat(1_000_000);
        let msg = format!("unknown field `{key}`, expected `number`");
        let cut = quote_spans(&msg);
        assert_eq!(
            cut,
            format!(
                "unknown field `{}{CUT_MARK}`, expected `number`",
                "k".repeat(64)
            )
        );
        let msg = format!("invalid type: string \"{key}\", expected a positive integer");
        assert!(quote_spans(&msg).len() < 200);
    }
}
