//! The reference finder: keywords, references and mentions in one view of a
//! text (the Markdown-stripped pieces, or the raw text).
//!
//! It reads every form the forge reads, and is looser wherever the forge is
//! strict, so that it finds at least what the forge acts on:
//!
//! * a keyword may follow the start of the text or *any* character that is
//!   not an ASCII letter or digit (the forge: whitespace, `(`, `[`); a
//!   keyword of ten bytes or more needs nothing before it (the forge looks
//!   only twelve bytes back, so such a word can start its window); and in
//!   a word that holds a URL or an address before it (a `:` or `@`, or
//!   `www.`), a keyword may start anywhere: the forge's linkify ends a link
//!   inside such a word (`http://e.exampleFixes` is the link
//!   `http://e.example`, then `Fixes` on a line of its own);
//! * between the keyword and the reference, after an optional `:`, any run
//!   of spaces, tabs and markup characters (`*_~` `` ` `` `'"<>()[]\`)
//!   is allowed, also none (the forge: exactly one space);
//! * what follows is read in every form the forge reads a reference in:
//!   - `#N`, `!N`, `owner/repo#N`, `owner/repo!N`, names of any length;
//!   - a link destination (`[scheme:][//authority]/owner/repo/issues/N`,
//!     or `/pulls/N`), split by Go's `net/url` rules ([`super::gourl`]),
//!     on any host; the forge reads a keyword before a link's
//!     destination wherever that destination first appears in the text,
//!     so the number also counts when it is followed by more characters,
//!     and each shorter number that another link in the text points to
//!     counts too ([`Destinations`]);
//!   - the text before a `[`: each `(` up to the next `[` may open a link
//!     destination read as above (the forge looks for a keyword before the
//!     `[` of a link);
//!   - an autolink (`<scheme:...>`, `http://...`, `www....`): the forge
//!     writes one that points at itself in place as
//!     `owner/repo#N` from the last four segments of its escaped path,
//!     whatever those segments hold, and reads that text again;
//! * a number is any run of digits, leading zeros allowed, as Go's
//!   `strconv.ParseInt` reads it; one too large for a 64-bit integer names
//!   nothing (the forge cannot parse it); it ends where no letter or digit
//!   follows (the forge wants whitespace or some punctuation there).
//!
//! Keywords match without regard to case, with Unicode case folding, as
//! Go's `(?i)` does: `cloſes` is `closes`.
//!
//! Every scan is linear in the text: positions found by scanning forward
//! are cached and reused by the next keyword in the same run, so a text of
//! many keywords in one long token costs no more than its length.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use regex::Regex;

use super::gourl;

/// At most this many HTML tags and autolinks are read past between a
/// keyword and its reference.
const MAX_SKIPPED: usize = 16;

/// Bytes allowed between a keyword and its reference.
fn is_separator(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t'
            | b'*'
            | b'_'
            | b'~'
            | b'`'
            | b'\''
            | b'"'
            | b'<'
            | b'>'
            | b'('
            | b')'
            | b'['
            | b']'
            | b'\\'
    )
}

fn is_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

fn is_scheme(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')
}

/// Ends an autolink candidate: whitespace or an angle bracket.
fn ends_token(b: u8) -> bool {
    b.is_ascii_whitespace() || b == b'<' || b == b'>'
}

/// Ends the path of a URL: the query, the fragment or the end of the token.
fn ends_path(b: u8) -> bool {
    ends_token(b) || b == b'?' || b == b'#'
}

/// A reference as written: `owner/repo` (when named) and the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRef {
    /// `owner/repo` as written, when the reference names a repository.
    pub repo: Option<String>,
    /// The number (negative only from a link path such as `/issues/-5`).
    pub number: i64,
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

/// The numbers of every issue or pull request path in a text (all its
/// readings): a link elsewhere whose destination is a prefix of what
/// follows a keyword makes the keyword act on it.
#[derive(Debug, Default)]
pub struct Destinations {
    numbers: HashSet<String>,
}

impl Destinations {
    /// Collect from `texts` with `finder`'s path pattern.
    pub fn of<'a>(finder: &Finder, texts: impl IntoIterator<Item = &'a str>) -> Destinations {
        let mut numbers = HashSet::new();
        for text in texts {
            for c in finder.path_any.captures_iter(text) {
                if let Some(m) = c.name("number") {
                    numbers.insert(format!(
                        "{}{}",
                        c.name("sign").map_or("", |s| s.as_str()),
                        m.as_str()
                    ));
                }
            }
        }
        Destinations { numbers }
    }

    fn contains(&self, number: &str) -> bool {
        self.numbers.contains(number)
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)` for `[+-]?[0-9]+`: leading zeros
/// allowed, `None` when it does not fit.
pub fn parse_number(sign: &str, digits: &str) -> Option<i64> {
    let trimmed = digits.trim_start_matches('0');
    if trimmed.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.is_empty() {
        return None;
    }
    let value: i128 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().ok()?
    };
    let value = if sign == "-" { -value } else { value };
    i64::try_from(value).ok()
}

/// The compiled patterns for one keyword list (cheap to clone).
#[derive(Debug, Clone)]
pub struct Finder {
    keyword: Regex,
    keyword_at_end: Regex,
    reference: Regex,
    path_any: Regex,
    mention: Regex,
    link_ref: Regex,
}

/// An issue or pull request path: `/owner/repo/issues/N` (or `/pulls/N`).
const ISSUE_PATH: &str = r"/(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+)/(?i:issues|pulls)/(?P<sign>[+-]?)(?P<number>[0-9]+)";

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
        let compile = |p: &str| Regex::new(p).expect("the finder's patterns compile");
        Finder {
            keyword: compile(&keyword),
            keyword_at_end: compile(&format!(
                r#"(?:^|[^A-Za-z0-9]){keyword}:?[ \t*_~`'"<>()\[\]\\]*\z"#
            )),
            reference: compile(
                r"(?:^|[^A-Za-z0-9_./#!&@%-])(?:(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+))?[#!](?P<number>[0-9]+)",
            ),
            path_any: compile(ISSUE_PATH),
            mention: compile(
                r"(?:^|[^A-Za-z0-9_@./-])@(?P<name>[A-Za-z0-9_-][A-Za-z0-9_.-]{0,39}(?:/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99})?)",
            ),
            // `[scheme:]` is matched apart: `[//authority]/owner/repo/issues/N`.
            link_ref: compile(&format!(r"\A(?://[^/?#\s]*)?{ISSUE_PATH}")),
        }
    }

    /// Every keyword + reference in `text`, in order; `dests` are the
    /// issue paths of the whole text.
    pub fn actions(&self, text: &str, dests: &Destinations) -> Vec<RawAction> {
        let bytes = text.as_bytes();
        let mut scan = Scan::new(text);
        let mut found = Vec::new();
        let mut words = LinkWords::default();
        for m in self.keyword.find_iter(text) {
            let before = text[..m.start()].bytes().next_back();
            if m.len() < 10
                && before.is_some_and(|b| b.is_ascii_alphanumeric())
                && !words.link_before(bytes, m.start())
            {
                continue;
            }
            let mut p = m.end();
            if bytes.get(p) == Some(&b':') {
                p += 1;
            }
            let sep_start = p;
            // Where a reference may start: after the separators, and also
            // after HTML tags and autolinks to other hosts, which the forge
            // writes as nothing (`fixes <b>http://host//!5)/b/issues/1`),
            // and at a `_` that begins a name (`fixes _acme/widgets#5`).
            let mut starts = Vec::new();
            for _ in 0..MAX_SKIPPED {
                while p < bytes.len() && is_separator(bytes[p]) {
                    if bytes[p] == b'_' {
                        starts.push(p);
                    }
                    if bytes[p] == b'<' {
                        starts.push(p + 1);
                        let gt = scan.tag_end(p + 1);
                        if bytes.get(gt) == Some(&b'>') {
                            p = gt;
                        }
                    }
                    p += 1;
                }
                starts.push(p);
                if p < bytes.len() && bytes[p].is_ascii_alphabetic() {
                    let end = scan.token_end(p);
                    let www = bytes.len() >= p + 4 && bytes[p..p + 4].eq_ignore_ascii_case(b"www.");
                    if end > p && (www || scan.after_scheme(p).is_some_and(|r| r > p)) {
                        p = end;
                        continue;
                    }
                }
                break;
            }
            let p = starts.first().copied().unwrap_or(p).max(sep_start);
            let bracket = text[sep_start..p.max(sep_start)]
                .rfind('[')
                .map(|i| sep_start + i);
            let mut push = |target: RawRef, end: usize| {
                found.push(RawAction {
                    keyword: m.as_str().to_string(),
                    target,
                    excerpt: text[m.start()..end.max(p)].to_string(),
                });
            };
            for &q in &starts {
                if let Some((r, end)) = scan.short_ref(q) {
                    push(r, end);
                }
                for (r, end) in self.link_refs_at(&mut scan, q, dests) {
                    push(r, end);
                }
                if let Some(r) = scan.autolink_ref(q) {
                    let end = scan.token_end(q);
                    push(r, end);
                }
            }
            let bracket = bracket.or_else(|| {
                let last = starts.last().copied().unwrap_or(p);
                text[sep_start..last].rfind('[').map(|i| sep_start + i)
            });
            if let Some(b) = bracket {
                // The forge reads a keyword before the `[` nearest before a
                // destination's `(`: every `(` up to the next `[`.
                let stop = text[b + 1..].find('[').map_or(text.len(), |i| b + 1 + i);
                for (i, _) in text[b + 1..stop].match_indices('(') {
                    let q = b + 1 + i + 1;
                    for (r, end) in self.link_refs_at(&mut scan, q, dests) {
                        push(r, end);
                    }
                }
            }
        }
        found
    }

    /// Link destinations starting at `p` that name an issue: the whole
    /// number, and each shorter number another link points to.
    fn link_refs_at(
        &self,
        scan: &mut Scan<'_>,
        p: usize,
        dests: &Destinations,
    ) -> Vec<(RawRef, usize)> {
        let Some(rest) = scan.after_scheme(p) else {
            return vec![];
        };
        let Some(c) = self.link_ref.captures(&scan.text[rest..]) else {
            return vec![];
        };
        let repo = Some(format!("{}/{}", &c["owner"], &c["repo"]));
        let sign = c.name("sign").map_or("", |s| s.as_str());
        let digits = c.name("number").expect("a number").as_str();
        let end = rest + c.get(0).expect("a match").end();
        let mut refs = Vec::new();
        for len in 1..=digits.len() {
            let prefix = &digits[..len];
            if (len == digits.len() || dests.contains(&format!("{sign}{prefix}")))
                && let Some(n) = parse_number(sign, prefix)
            {
                refs.push((
                    RawRef {
                        repo: repo.clone(),
                        number: n,
                    },
                    end - digits.len() + len,
                ));
            }
        }
        refs
    }

    /// The keyword that `text` ends with (after an optional `:` and
    /// separators), if any: what stands right before a link.
    pub fn keyword_at_end<'t>(&self, text: &'t str) -> Option<&'t str> {
        self.keyword_at_end
            .captures(text)
            .and_then(|c| c.name("keyword"))
            .map(|m| m.as_str())
    }

    /// Every reference in `text`: plain ones, issue paths of any URL or
    /// link, and what the autolinks in it would be written as, in order.
    pub fn references(&self, text: &str) -> Vec<RawRef> {
        let mut refs: Vec<RawRef> = Vec::new();
        let plain = |t: &str, refs: &mut Vec<RawRef>| {
            for c in self.reference.captures_iter(t) {
                let end = c.get(0).map_or(0, |m| m.end());
                if t[end..].chars().next().is_some_and(char::is_alphanumeric) {
                    continue;
                }
                if let Some(n) = parse_number("", &c["number"]) {
                    let repo = c
                        .name("owner")
                        .zip(c.name("repo"))
                        .map(|(o, r)| format!("{}/{}", o.as_str(), r.as_str()));
                    refs.push(RawRef { repo, number: n });
                }
            }
        };
        plain(text, &mut refs);
        for c in self.path_any.captures_iter(text) {
            if let Some(n) = parse_number(&c["sign"], &c["number"]) {
                refs.push(RawRef {
                    repo: Some(format!("{}/{}", &c["owner"], &c["repo"])),
                    number: n,
                });
            }
        }
        let mut scan = Scan::new(text);
        let bytes = text.as_bytes();
        for p in 0..bytes.len() {
            let starts = p == 0 || {
                let b = bytes[p - 1];
                b.is_ascii_whitespace()
                    || matches!(b, b'<' | b'(' | b'*' | b'_' | b'~' | b'\'' | b'"' | b'[')
            };
            if starts && bytes[p].is_ascii_alphabetic() {
                for written in scan.autolink_written(p) {
                    plain(&written, &mut refs);
                }
            }
        }
        refs
    }

    /// The reference a link destination points at, if it is an issue or
    /// pull request URL (absolute, or a path from the forge's root).
    pub fn link_reference(&self, destination: &str) -> Option<RawRef> {
        let destination = destination.trim();
        let mut scan = Scan::new(destination);
        let rest = scan.after_scheme(0)?;
        let c = self.link_ref.captures(&destination[rest..])?;
        Some(RawRef {
            repo: Some(format!("{}/{}", &c["owner"], &c["repo"])),
            number: parse_number(&c["sign"], &c["number"])?,
        })
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

/// Whether the word (the run without whitespace) around a position holds
/// the start of a URL or an address before it: where the forge's linkify
/// may end a link and start a new piece of text. Positions are asked in
/// increasing order; each byte is looked at once.
#[derive(Default)]
struct LinkWords {
    /// Bytes before this have been looked at.
    scanned: usize,
    /// A `:`, `@` or `www.` since the last whitespace.
    link: bool,
}

impl LinkWords {
    fn link_before(&mut self, bytes: &[u8], p: usize) -> bool {
        for i in self.scanned..p {
            match bytes[i] {
                b if b.is_ascii_whitespace() => self.link = false,
                b':' | b'@' => self.link = true,
                b'.' if i >= 3 && bytes[i - 3..i].eq_ignore_ascii_case(b"www") => self.link = true,
                _ => {}
            }
        }
        self.scanned = self.scanned.max(p);
        self.link
    }
}

/// "The next position at or after `p` where `stop` holds", cached for the
/// run it found, so that later positions in the same run cost nothing.
struct NextOf {
    stop: fn(u8) -> bool,
    run: Option<(usize, usize)>,
}

impl NextOf {
    fn new(stop: fn(u8) -> bool) -> NextOf {
        NextOf { stop, run: None }
    }

    fn at(&mut self, bytes: &[u8], p: usize) -> usize {
        if let Some((from, to)) = self.run
            && from <= p
            && p <= to
        {
            return to;
        }
        let to = bytes[p..]
            .iter()
            .position(|b| (self.stop)(*b))
            .map_or(bytes.len(), |i| p + i);
        self.run = Some((p, to));
        to
    }
}

/// One text being scanned, with its caches.
struct Scan<'t> {
    text: &'t str,
    scheme_end: NextOf,
    name_end: NextOf,
    path_end: NextOf,
    token_end: NextOf,
    tag_end: NextOf,
    slash: NextOf,
    written: HashMap<(usize, usize, bool), Vec<String>>,
}

impl<'t> Scan<'t> {
    fn new(text: &'t str) -> Scan<'t> {
        Scan {
            text,
            scheme_end: NextOf::new(|b| !is_scheme(b)),
            name_end: NextOf::new(|b| !is_name(b)),
            path_end: NextOf::new(ends_path),
            token_end: NextOf::new(ends_token),
            tag_end: NextOf::new(|b| matches!(b, b'>' | b'<' | b'\n')),
            slash: NextOf::new(|b| b == b'/'),
            written: HashMap::new(),
        }
    }

    /// The `>` (or line end, or `<`) that ends an HTML tag begun before `p`.
    fn tag_end(&mut self, p: usize) -> usize {
        let bytes = self.text.as_bytes();
        if p >= bytes.len() {
            return p;
        }
        self.tag_end.at(bytes, p)
    }

    fn token_end(&mut self, p: usize) -> usize {
        self.token_end.at(self.text.as_bytes(), p)
    }

    /// Where a URL starting at `p` continues after its scheme (`p` itself
    /// when it has none); `None` if it cannot have a path (opaque).
    fn after_scheme(&mut self, p: usize) -> Option<usize> {
        let bytes = self.text.as_bytes();
        if p >= bytes.len() {
            return Some(p);
        }
        if bytes[p].is_ascii_alphabetic() {
            let end = self.scheme_end.at(bytes, p);
            if bytes.get(end) == Some(&b':') {
                return (bytes.get(end + 1) == Some(&b'/')).then_some(end + 1);
            }
        }
        Some(p)
    }

    /// `#N`, `!N`, `owner/repo#N` or `owner/repo!N` at `p`, ending where
    /// no letter or digit follows: the reference and its end.
    fn short_ref(&mut self, p: usize) -> Option<(RawRef, usize)> {
        let bytes = self.text.as_bytes();
        let mut at = p;
        let mut repo = None;
        if bytes.get(at).copied().is_some_and(is_name) {
            let owner_end = self.name_end.at(bytes, at);
            if bytes.get(owner_end) != Some(&b'/') {
                return None;
            }
            let repo_start = owner_end + 1;
            if !bytes.get(repo_start).copied().is_some_and(is_name) {
                return None;
            }
            let repo_end = self.name_end.at(bytes, repo_start);
            repo = Some(self.text[p..repo_end].to_string());
            at = repo_end;
        }
        self.number_at(at, repo)
    }

    /// `#N` or `!N` at `at`, ending at a non-alphanumeric character.
    fn number_at(&mut self, at: usize, repo: Option<String>) -> Option<(RawRef, usize)> {
        let bytes = self.text.as_bytes();
        if !matches!(bytes.get(at), Some(b'#' | b'!')) {
            return None;
        }
        let digits_end = bytes[at + 1..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(bytes.len(), |i| at + 1 + i);
        if self.text[digits_end..]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric)
        {
            return None;
        }
        let number = parse_number("", &self.text[at + 1..digits_end])?;
        Some((RawRef { repo, number }, digits_end))
    }

    /// The reference an autolink starting at `p` is written as, when that
    /// written text starts with one.
    fn autolink_ref(&mut self, p: usize) -> Option<RawRef> {
        for written in self.autolink_written(p) {
            let mut inner = Scan::new(&written);
            if let Some((r, _)) = inner.short_ref(0) {
                return Some(r);
            }
        }
        None
    }

    /// What the forge writes in place of an autolink starting at `p` (a
    /// URL with a scheme, or `www.`), for each place it may end: its
    /// escaped path's last four segments as `owner/repo#N` (`!` for pulls).
    fn autolink_written(&mut self, p: usize) -> Vec<String> {
        let bytes = self.text.as_bytes();
        let text = self.text;
        if !bytes.get(p).is_some_and(u8::is_ascii_alphabetic) {
            return vec![];
        }
        let www = bytes.len() >= p + 4 && bytes[p..p + 4].eq_ignore_ascii_case(b"www.");
        let rest = match self.after_scheme(p) {
            Some(r) if r > p => r,
            _ if www => p,
            _ => return vec![],
        };
        // The path starts after the authority (a `www.` host is one).
        let path_start = if www || text[rest..].starts_with("//") {
            let host = if www { p } else { rest + 2 };
            self.slash.at(bytes, host)
        } else {
            rest
        };
        let url_end = self.path_end.at(bytes, p);
        if path_start >= url_end {
            return vec![];
        }
        self.written
            .entry((path_start, url_end, true))
            .or_insert_with(|| written_for(&text[path_start..url_end]))
            .clone()
    }
}

/// What the forge may write for an autolink whose path is `path` (as
/// written) or any beginning of it (linkify may end the link early, even
/// before a `/`): for each `issues` or `pulls` segment with two segments
/// before it, `owner/repo#N` from those and the one after it, as written
/// and as Go escapes it again.
fn written_for(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for path in [path.to_string(), gourl::reescaped(path)] {
        let segments: Vec<&str> = path.split('/').collect();
        for k in 3..segments.len() {
            let pull = if segments[k].eq_ignore_ascii_case("pulls") {
                '!'
            } else if segments[k].eq_ignore_ascii_case("issues") {
                '#'
            } else {
                continue;
            };
            let (owner, repo) = (segments[k - 2], segments[k - 1]);
            let number = segments.get(k + 1).copied().unwrap_or("");
            out.push(format!("{owner}/{repo}{pull}{number}"));
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finder() -> Finder {
        Finder::new(["close", "closes", "fixes", "resolves", "reopen"])
    }

    fn actions(text: &str) -> Vec<String> {
        let f = finder();
        let dests = Destinations::of(&f, [text]);
        f.actions(text, &dests)
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
        // The forge's linkify may end a link inside a word, before the keyword.
        for text in [
            "http://e.exampleCloses #5",
            "see www.e.exampleCloses #5",
            "a@b.exampleCloses #5",
        ] {
            assert_eq!(actions(text), ["Closes #5"], "{text:?}");
        }
        assert!(actions("exampleCloses #5 http://e.example").is_empty());
    }

    #[test]
    fn separators_and_reference_forms() {
        assert_eq!(actions("Closes: #5"), ["Closes #5"]);
        assert_eq!(actions("closes **#5**"), ["closes #5"]);
        assert_eq!(actions("closes (#5)"), ["closes #5"]);
        assert_eq!(actions("FIXES Acme/Other!7."), ["FIXES Acme/Other#7"]);
        assert_eq!(
            actions("resolves <https://h.example/acme/other/pulls/9#x>"),
            ["resolves acme/other#9", "resolves acme/other#9"]
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
    fn numbers_are_read_as_go_parses_them() {
        assert_eq!(actions("closes #00000000000000000000500"), ["closes #500"]);
        assert_eq!(
            actions("closes #9223372036854775807"),
            ["closes #9223372036854775807"]
        );
        assert!(actions("closes #9223372036854775808").is_empty());
        assert_eq!(parse_number("-", "0005"), Some(-5));
        assert_eq!(parse_number("+", "5"), Some(5));
        assert_eq!(parse_number("", "00000000000000000000"), Some(0));
        assert_eq!(parse_number("", ""), None);
    }

    #[test]
    fn links_as_go_reads_them() {
        for (text, expected) in [
            (
                "closes <http://'@//acme/widget/issues/500>",
                "closes acme/widget#500",
            ),
            (
                "closes HTTP://h/acme/widget/pulls/500",
                "closes acme/widget#500",
            ),
            ("closes http:/a/b/issues/+5", "closes a/b#5"),
            ("closes //h/a/b/issues/5?x", "closes a/b#5"),
            ("fixes <http://h//!5)/b/issues/6>", "fixes #5"),
            ("fixes [x]\n(/a/b/issues/5)", "fixes a/b#5"),
        ] {
            assert!(
                actions(text).contains(&expected.to_string()),
                "{text}: {:?}",
                actions(text)
            );
        }
        // A destination elsewhere that is a prefix of what follows the keyword.
        let found = actions("fixes /a/b/issues/55 [x](/a/b/issues/5)");
        assert!(found.contains(&"fixes a/b#5".to_string()), "{found:?}");
        assert!(found.contains(&"fixes a/b#55".to_string()), "{found:?}");
        assert!(!actions("fixes /a/b/issues/17").contains(&"fixes a/b#1".to_string()));
        assert!(actions("fixes mailto:a/b/issues/5").is_empty());
    }

    #[test]
    fn references_and_mentions() {
        let f = finder();
        let mut refs: Vec<_> = f
            .references("see #5, (o/r#6) x#7 https://h/a/b/issues/8 &#9; a/b/c#10 #0011")
            .into_iter()
            .map(|r| (r.repo, r.number))
            .collect();
        // The URL is also what its autolink is written as: counted once later.
        refs.dedup();
        assert_eq!(
            refs,
            [
                (None, 5),
                (Some("o/r".into()), 6),
                (None, 11),
                (Some("a/b".into()), 8)
            ]
        );
        let refs: Vec<_> = f
            .references("<http://h//!500)/b/issues/6>")
            .into_iter()
            .map(|r| (r.repo, r.number))
            .collect();
        assert!(refs.contains(&(None, 500)), "{refs:?}");
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
        assert!(f.mentions(&format!("@{long} @{long}.x")).is_empty());
        assert_eq!(f.mentions(&format!("@{}.", &long[1..])), [&long[1..]]);
    }
}
