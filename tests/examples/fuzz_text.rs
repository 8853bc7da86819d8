//! Differential fuzzing of the text checker against a judge that runs the
//! forge's own reference code (Gitea's Markdown stripper and reference
//! finder, as a line-oriented program: one JSON string in, one JSON object
//! with `refs` and `actions` out).
//!
//! Texts come from a grammar (closing and reopening keywords in any case
//! and disguise, every reference form: numbers with leading zeros and too
//! large, `owner/repo`, links and autolinks with user info, empty hosts,
//! doubled slashes, escapes, signs and schemes in any case; Markdown
//! constructs, HTML, entities, invisible and look-alike characters,
//! nesting) and from mutations of what it generates, plus ordinary texts
//! (prose, code, release notes, in-scope keywords, links to other sites).
//! Each text goes through the checker (acme/widgets, writable #17 and #18,
//! default rules) and through the judge in both of its modes (the released
//! behaviour and `NEWLINKS=1`).
//!
//! * an **escape** is a text the judge finds hostile (in either mode: a
//!   closing or reopening reference outside #17/#18 of acme/widgets, or
//!   more than 10 distinct references outside them) that the checker
//!   accepts; each one is written to `--escapes` with the judge's verdict;
//! * a **false positive** is a text the judge finds harmless in both modes
//!   that the checker refuses; they are counted by the class of text and
//!   the reason.
//!
//! ```text
//! cargo run --release -p forge-e2e --example fuzz_text -- \
//!     --oracle /tmp/gitea-oracle --count 1000000 [--seed 1] [--escapes escapes.jsonl]
//! ```
//!
//! The judge is a development tool and not part of the project; the tests
//! never need it. What it teaches goes into `tests/corpus/` as data.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use forge_sidecar::text_check::{Policy, Refusal, check, default_rules};
use serde_json::Value;

const APPURL: &str = "http://gitea.test/";
const BATCH: usize = 2000;
const MAX_FOREIGN_REFS: usize = 10;

/// splitmix64: small, fast, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEYWORDS: &[&str] = &[
    "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved",
    "reopen", "reopens", "reopened",
];

fn keyword(r: &mut Rng) -> String {
    let word = *r.pick(KEYWORDS);
    let mut s: String = word
        .chars()
        .map(|c| {
            if r.chance(30) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    if r.chance(5) {
        let at = 1 + r.below(s.len() - 1);
        let disguise = *r.pick(&[
            "\u{200b}", "\u{ad}", "\u{200d}", "\u{2060}", "\u{feff}", "\u{301}",
        ]);
        s.insert_str(at, disguise);
    }
    if r.chance(5) {
        s = match r.below(5) {
            0 => s.replacen('o', "\u{43e}", 1),
            1 => s.replacen('e', "\u{435}", 1),
            2 => s.replacen('s', "\u{17f}", 1),
            3 => format!("&#{};{}", s.as_bytes()[0], &s[1..]),
            _ => s.replacen('c', "\u{441}", 1),
        };
    }
    if r.chance(30) {
        s.push(':');
    }
    s
}

fn number(r: &mut Rng) -> String {
    let n = match r.below(10) {
        0..=2 => "500".to_string(),
        3 => "17".to_string(),
        4 => "18".to_string(),
        5 => "0".to_string(),
        6 => "9223372036854775807".to_string(),
        7 => "9223372036854775808".to_string(),
        8 => format!("{}", r.below(100_000)),
        _ => "1".to_string(),
    };
    if r.chance(25) {
        format!("{}{n}", "0".repeat(1 + r.below(25)))
    } else {
        n
    }
}

fn repo(r: &mut Rng) -> String {
    r.pick(&[
        "acme/widgets",
        "ACME/Widgets",
        "other/repo",
        "acme/widget",
        "a.b/c-d_e",
        "acme/widgets2",
    ])
    .to_string()
}

fn url(r: &mut Rng) -> String {
    let scheme = *r.pick(&[
        "http://", "https://", "HTTP://", "Http://", "x:", "http:", "//", "", "ftp://",
    ]);
    let authority = if scheme.ends_with("//") {
        r.pick(&[
            "gitea.test",
            "GITEA.TEST",
            "",
            "'@",
            "u:p@gitea.test",
            "u@",
            "gitea.test:3000",
            "other.example",
            "(x)@gitea.test",
            "%41@",
        ])
        .to_string()
    } else {
        String::new()
    };
    let lead = *r.pick(&["/", "/", "//", "/sub/", "///", "/x/y/"]);
    let owner = *r.pick(&[
        "acme",
        "ACME",
        "other",
        "!500)",
        "(#500)",
        "'#500'",
        "acme%2Fwidgets",
        "%61cme",
        "a b",
    ]);
    let name = *r.pick(&["widgets", "repo", "widgets!500)", "w"]);
    let kind = *r.pick(&["issues", "pulls", "issues", "Issues", "issue%73", "wiki"]);
    let num = match r.below(6) {
        0 => format!("+{}", number(r)),
        1 => format!("-{}", number(r)),
        2 => format!("%3{}", r.below(10)),
        _ => number(r),
    };
    let tail = *r.pick(&[
        "", "", "/", "?x=1", "#c", "/files", ")", ".", "x", "\"", "!",
    ]);
    format!("{scheme}{authority}{lead}{owner}/{name}/{kind}/{num}{tail}")
}

fn reference(r: &mut Rng) -> String {
    match r.below(12) {
        0..=2 => format!("#{}", number(r)),
        3 => format!("!{}", number(r)),
        4 | 5 => format!("{}{}{}", repo(r), r.pick(&["#", "!"]), number(r)),
        6 => format!("<{}>", url(r)),
        7 => format!(
            "[{}]({})",
            r.pick(&["x", "this", "", "#500", "a b"]),
            url(r)
        ),
        8 => format!("[t](<{}>)", url(r)),
        9 => format!("![a]({} \"t\")", url(r)),
        10 => format!("www.gitea.test/{}/issues/{}", repo(r), number(r)),
        _ => url(r),
    }
}

fn separator(r: &mut Rng) -> String {
    if r.chance(50) {
        return " ".into();
    }
    r.pick(&[
        " ", " ", " ", "", "  ", "\t", "\n", "  \n", "\\\n", " *", "**", " `", "&#32;", "\u{a0}",
        " <b>", " (", " [", "\u{3000}", " \\",
    ])
    .to_string()
}

fn wrap(r: &mut Rng, inner: String) -> String {
    let (open, close) = *r.pick(&[
        ("", ""),
        ("> ", ""),
        (">", ""),
        ("*", "*"),
        ("**", "**"),
        ("_", "_"),
        ("~~", "~~"),
        ("`x`", ""),
        ("`", "`"),
        ("<b>", "</b>"),
        ("<div>\n", "\n</div>"),
        ("<!-- ", " -->"),
        ("<!-- marker -->\n", ""),
        ("- [ ] ", ""),
        ("- [x]", ""),
        ("1. ", ""),
        ("# ", ""),
        ("## ", " {#id}"),
        ("|", "|"),
        ("|a|\n|-|\n|", "|"),
        ("[x](http://e.example)", ""),
        ("[", "](http://e.example)"),
        ("x[^1]\n\n[^1]: ", ""),
        ("<details>\n\n", "\n\n</details>"),
        ("```\n", "\n```"),
        ("    ", ""),
        ("Term\n: ", ""),
        ("text\\\n", ""),
        ("(", ")"),
        ("\"", "\""),
        ("'", "'"),
        ("[", "]"),
        ("<span>", "</span>"),
        ("text  \n", ""),
        ("a\n\n", "\n\nb"),
    ]);
    format!("{open}{inner}{close}")
}

const WORDS: &[&str] = &[
    "the", "crash", "when", "saving", "a", "file", "this", "change", "adds", "tests", "for", "and",
    "see", "issue", "thanks", "PR", "update", "docs", "v1.2.3", "refactor", "parser", "fix-up",
];

fn prose(r: &mut Rng, words: usize) -> String {
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        let word = r.pick::<&str>(WORDS);
        s.push_str(word);
    }
    s
}

/// One hostile-leaning text from the grammar.
fn grammar(r: &mut Rng) -> String {
    let mut parts = Vec::new();
    for _ in 0..1 + r.below(3) {
        let core = match r.below(4) {
            0 => format!("{}{}", keyword(r), separator(r)),
            _ => format!("{}{}{}", keyword(r), separator(r), reference(r)),
        };
        let mut piece = if r.chance(10) {
            // A destination found again after the keyword, longer there.
            let u = url(r);
            let more = *r.pick(&["", "5", "/x", "abc", ")"]);
            format!("{} {u}{more} [x]({u})", keyword(r))
        } else {
            core
        };
        for _ in 0..if r.chance(50) { 0 } else { r.below(3) } {
            piece = wrap(r, piece);
        }
        if r.chance(30) {
            let words = 1 + r.below(4);
            piece = format!("{} {piece}", prose(r, words));
        }
        if r.chance(30) {
            piece = format!(
                "{piece}{}",
                r.pick(&[
                    ".", ",", "!", "?", ";", ":", ")", "'", "\"", " x", "\n", "abc", "]"
                ])
            );
        }
        parts.push(piece);
    }
    if r.chance(20) {
        parts.push(reference(r));
    }
    let glue = *r.pick(&[" ", "\n", "\n\n", "", " and "]);
    parts.join(glue)
}

/// Ordinary texts the checker must let through, by class.
fn ordinary(r: &mut Rng) -> (&'static str, String) {
    match r.below(6) {
        0 => {
            let words = 5 + r.below(20);
            ("prose", format!("{}.", prose(r, words)))
        }
        1 => (
            "code",
            format!(
                "```rust\nfn main() {{ let x = [1, 2]; println!(\"#{{}}\", x[0]); }}\n// {}\n```\n\n    # indented {}\n",
                prose(r, 3),
                prose(r, 2)
            ),
        ),
        2 => (
            "release notes",
            format!(
                "## v1.{}.0\n\n- {} (#{})\n- {} (#{})\n- see #500\n",
                r.below(9),
                prose(r, 4),
                r.below(900),
                prose(r, 3),
                r.below(900)
            ),
        ),
        3 => (
            "in-scope keyword",
            r.pick(&[
                "Closes #17",
                "Fixes #0017",
                "fixes #18.",
                "Resolves acme/widgets#17",
                "Closes [#17](http://gitea.test/acme/widgets/issues/17)",
                "closes http://gitea.test/acme/widgets/pulls/18",
                "Fixes: #17, see #500",
            ])
            .to_string(),
        ),
        4 => (
            "links to other sites",
            format!(
                "{} https://example.com/docs/{} and [the guide](https://docs.rs/regex/1/issues/{}) <https://other.example/x>",
                prose(r, 3),
                r.below(99),
                r.below(99)
            ),
        ),
        _ => (
            "see refs",
            format!("see #500 and other/repo#{}; {}", r.below(99), prose(r, 4)),
        ),
    }
}

const MUTATION_CHARS: &[&str] = &[
    " ", "\n", "#", "!", "/", "<", ">", "[", "]", "(", ")", "*", "_", "`", ":", "\\", "&", ";",
    "'", "\"", "@", "%", "0", "5", "\u{200b}", "\u{a0}", "www.", "//", "?", "-", "+",
];

fn mutate(r: &mut Rng, text: &str) -> String {
    let mut chars: Vec<String> = text.chars().map(String::from).collect();
    for _ in 0..1 + r.below(4) {
        let at = r.below(chars.len() + 1);
        match r.below(4) {
            0 => chars.insert(at, r.pick(MUTATION_CHARS).to_string()),
            1 if at < chars.len() => {
                chars.remove(at);
            }
            2 if at < chars.len() => chars[at] = r.pick(MUTATION_CHARS).to_string(),
            _ => {
                let from = r.below(chars.len() + 1);
                let to = (from + r.below(12)).min(chars.len());
                let copy: Vec<String> = chars[from..to].to_vec();
                let at = at.min(chars.len());
                chars.splice(at..at, copy);
            }
        }
    }
    chars.concat()
}

fn generate(r: &mut Rng) -> (&'static str, String) {
    match r.below(10) {
        0..=4 => ("grammar", grammar(r)),
        5..=7 => {
            let text = grammar(r);
            ("mutated", mutate(r, &text))
        }
        8 => ordinary(r),
        _ => {
            let (_, t) = ordinary(r);
            ("mutated ordinary", mutate(r, &t))
        }
    }
}

struct Oracle {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Oracle {
    fn start(path: &str, newlinks: bool) -> Oracle {
        let mut child = Command::new(path)
            .env("APPURL", APPURL)
            .env("NEWLINKS", if newlinks { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the judge {path}: {e}; build it first"));
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        Oracle { child, out }
    }

    /// Send `texts` to the judge (from a thread, so that both judges work at once).
    fn send(&mut self, texts: &[String]) -> std::thread::JoinHandle<std::process::ChildStdin> {
        let mut input = String::new();
        for t in texts {
            input.push_str(&serde_json::to_string(t).expect("JSON"));
            input.push('\n');
        }
        let mut stdin = self.child.stdin.take().expect("stdin");
        std::thread::spawn(move || {
            stdin
                .write_all(input.as_bytes())
                .expect("write to the judge");
            stdin
        })
    }

    /// The judge's verdicts for the `n` texts sent, in order.
    fn receive(
        &mut self,
        n: usize,
        writer: std::thread::JoinHandle<std::process::ChildStdin>,
    ) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        let mut line = String::new();
        for _ in 0..n {
            line.clear();
            self.out.read_line(&mut line).expect("read from the judge");
            out.push(
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("judge said {line:?}: {e}")),
            );
        }
        self.child.stdin = Some(writer.join().expect("writer"));
        out
    }
}

/// Outside #17/#18 of acme/widgets.
fn foreign(r: &Value) -> bool {
    let own = match (r["owner"].as_str(), r["name"].as_str()) {
        (None, None) => true,
        (Some(o), Some(n)) => o == "acme" && n == "widgets",
        _ => false,
    };
    !(own && matches!(r["n"].as_i64(), Some(17 | 18)))
}

/// Why the judge finds a text hostile, if it does.
fn hostile(v: &Value) -> Option<String> {
    if let Some(a) = v["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| foreign(a))
    {
        return Some(format!("acts: {a}"));
    }
    let distinct: HashSet<(String, i64)> = v["refs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| foreign(r))
        .map(|r| {
            let repo = match (r["owner"].as_str(), r["name"].as_str()) {
                (Some(o), Some(n)) if !(o == "acme" && n == "widgets") => format!("{o}/{n}"),
                _ => String::new(),
            };
            (repo, r["n"].as_i64().unwrap_or_default())
        })
        .collect();
    (distinct.len() > MAX_FOREIGN_REFS).then(|| format!("{} foreign references", distinct.len()))
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(oracle) = arg(&args, "--oracle") else {
        eprintln!("usage: fuzz_text --oracle PATH [--count N] [--seed S] [--escapes FILE]");
        std::process::exit(2);
    };
    let count: usize = arg(&args, "--count").map_or(10_000, |c| c.parse().expect("--count N"));
    let seed: u64 = arg(&args, "--seed").map_or(1, |s| s.parse().expect("--seed S"));
    let escapes_path = arg(&args, "--escapes").unwrap_or_else(|| "fuzz-text-escapes.jsonl".into());
    let policy = Policy::new("acme", "widgets", &[17, 18], &default_rules());
    let mut judges = [Oracle::start(&oracle, false), Oracle::start(&oracle, true)];
    let mut rng = Rng(seed);
    let started = Instant::now();
    let (mut done, mut hostile_n, mut escapes) = (0usize, 0usize, Vec::new());
    let mut harmless: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut false_positives: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut check_time = std::time::Duration::ZERO;
    while done < count {
        let n = BATCH.min(count - done);
        let batch: Vec<(&str, String)> = (0..n).map(|_| generate(&mut rng)).collect();
        let texts: Vec<String> = batch.iter().map(|(_, t)| t.clone()).collect();
        let writers = [judges[0].send(&texts), judges[1].send(&texts)];
        let [w0, w1] = writers;
        let verdicts = [judges[0].receive(n, w0), judges[1].receive(n, w1)];
        for (i, (class, text)) in batch.iter().enumerate() {
            let t = Instant::now();
            let ours = check(text, &policy);
            check_time += t.elapsed();
            let why = hostile(&verdicts[0][i])
                .map(|w| format!("released: {w}"))
                .or_else(|| hostile(&verdicts[1][i]).map(|w| format!("newer: {w}")));
            match (why, &ours) {
                (Some(why), Ok(_)) => {
                    hostile_n += 1;
                    eprintln!("ESCAPE {text:?}: {why}");
                    escapes.push(serde_json::json!({
                        "text": text, "class": class, "why": why,
                        "released": verdicts[0][i]["actions"], "newer": verdicts[1][i]["actions"],
                        "refs": verdicts[0][i]["refs"],
                    }));
                }
                (Some(_), Err(_)) => hostile_n += 1,
                (None, result) => {
                    let entry = harmless.entry(class).or_default();
                    entry.0 += 1;
                    if let Err(refusal) = result {
                        entry.1 += 1;
                        let reason = match refusal {
                            Refusal::ActsOutside(a) => format!("acts outside ({})", a.found.code()),
                            Refusal::TooManyForeignRefs { .. } => "too many references".into(),
                            Refusal::TooManyMentions { .. } => "too many mentions".into(),
                        };
                        let fp = false_positives
                            .entry(format!("{class}: {reason}"))
                            .or_insert((0, text.clone()));
                        fp.0 += 1;
                    }
                }
            }
        }
        done += n;
        if done % 100_000 < BATCH {
            eprintln!(
                "{done} texts, {} escapes, {:.0} s",
                escapes.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let elapsed = started.elapsed();
    if !escapes.is_empty() {
        let mut f = std::fs::File::create(&escapes_path).expect("escapes file");
        for e in &escapes {
            writeln!(f, "{e}").expect("write escapes");
        }
    }
    println!(
        "fuzz_text: {done} texts (seed {seed}), each judged in both modes; {hostile_n} hostile, {} escapes; {:.1} s wall ({:.1} µs per text in the checker)",
        escapes.len(),
        elapsed.as_secs_f64(),
        check_time.as_secs_f64() * 1e6 / done as f64
    );
    println!("harmless texts refused, by class:");
    for (class, (total, refused)) in &harmless {
        println!(
            "  {class:<20} {refused:>7} of {total:>8} ({:.2}%)",
            100.0 * *refused as f64 / (*total).max(1) as f64
        );
    }
    for (what, (n, example)) in &false_positives {
        println!("  {n:>7} × {what}; e.g. {example:?}");
    }
    if !escapes.is_empty() {
        println!("escapes written to {escapes_path}");
        std::process::exit(1);
    }
}
