//! How long the text checker takes on the largest texts it is given:
//! 64 KiB of ordinary text (prose, lists, code, links, references) and
//! 64 KiB texts built to be slow (keywords packed into one long token,
//! an open `[` before thousands of `(`, long URLs and autolinks, runs of
//! digits, look-alike characters and entities). Prints p50 and the worst
//! case of each in microseconds.
//!
//! ```text
//! cargo bench -p forge-e2e --bench text_check
//! ```

use std::time::{Duration, Instant};

use forge_sidecar::text_check::{Policy, check, default_rules};

const SIZE: usize = 64 * 1024;
const RUNS: usize = 200;

fn fill(unit: &str) -> String {
    let mut s = String::with_capacity(SIZE + unit.len());
    while s.len() + unit.len() <= SIZE {
        s.push_str(unit);
    }
    s
}

fn ordinary() -> String {
    fill(
        "## Release notes\n\nThis change fixes the crash when saving a file with an empty name (see #500 \
         and other/repo#12). Thanks @alice for the report.\n\n- Render empty input\n- Update the \
         [guide](https://example.com/docs/guide) and <https://example.com/faq>\n\n```rust\nfn main() \
         { println!(\"#{}\", 1); }\n```\n\nCloses #17.\n\n",
    )
}

fn adversarial() -> Vec<(&'static str, String)> {
    vec![
        ("keywords in one token", fill("fixes.")),
        ("keyword colon runs", fill("closes:")),
        (
            "open bracket then parentheses",
            format!("fixes [{}", fill("(/a/")),
        ),
        ("long URL", format!("fixes http://h/{}", fill("a/b/"))),
        ("autolinks", fill("fixes <http://h//!5)/b/issues/500> ")),
        (
            "links",
            fill("fixes [x](http://'@/acme/widgets/issues/0500) "),
        ),
        ("digits", format!("fixes #{}", fill("0"))),
        (
            "entities and look-alikes",
            fill("&#99;l\u{43e}\u{200b}ses&#32;#5 "),
        ),
        ("emphasis", fill("*fixes* _#5_ ")),
        ("schemes", fill("a+b.c-d:")),
    ]
}

fn measure(text: &str, policy: &Policy) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let _ = std::hint::black_box(check(std::hint::black_box(text), policy));
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[RUNS / 2], times[RUNS - 1])
}

fn main() {
    let policy = Policy::new("acme", "widgets", &[17, 18], &default_rules());
    let text = ordinary();
    let (p50, worst) = measure(&text, &policy);
    println!(
        "ordinary 64 KiB ({} bytes): p50 {} µs, worst {} µs",
        text.len(),
        p50.as_micros(),
        worst.as_micros()
    );
    let mut overall = Duration::ZERO;
    for (name, text) in adversarial() {
        let (p50, worst) = measure(&text, &policy);
        overall = overall.max(worst);
        println!(
            "adversarial 64 KiB, {name} ({} bytes): p50 {} µs, worst {} µs",
            text.len(),
            p50.as_micros(),
            worst.as_micros()
        );
    }
    println!("adversarial worst case overall: {} µs", overall.as_micros());
}
