//! Independent contract check: the Gitea client against Stoplight Prism's
//! validating mock of the official Gitea swagger spec. Prism answers 4xx
//! (422, 400, 415, 401, 404) to any request that does not match the spec, so
//! every request the client can send must come back 2xx.
//!
//! Prism is installed by `tests/prism/install.sh` (run by `tests/run.sh`).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forge_e2e::fake_gitea::contract::swagger_path;
use forge_protocol::{IssueNumber, Text};
use forge_sidecar::config::Secret;
use forge_sidecar::forge::gitea::GiteaForge;
use forge_sidecar::forge::{Forge, ForgeError};

const START_TIMEOUT: Duration = Duration::from_secs(60);

struct Prism {
    child: Child,
    port: u16,
}

impl Prism {
    fn start() -> Prism {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prism/node_modules/.bin/prism");
        assert!(
            bin.exists(),
            "Prism is not installed: run tests/prism/install.sh (tests/run.sh does)"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args([
                "mock",
                "--errors=false",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .arg(swagger_path().expect("swagger spec"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prism");
        let mut prism = Prism { child, port };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = prism.child.try_wait() {
                panic!("prism exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "prism did not start within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        prism
    }
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prism's static examples are not valid data for us (e.g. negative
/// numbers), so a 2xx may still fail to parse: that still proves the
/// request was accepted. A 4xx means the spec refused our request.
fn accepted<T>(what: &str, result: Result<T, ForgeError>) {
    match result {
        Ok(_)
        | Err(ForgeError::Rejected {
            status: 200..=299, ..
        }) => {}
        Err(e) => panic!("Prism refused the client's {what} request: {e}"),
    }
}

#[test]
fn every_request_the_client_sends_is_accepted_by_prism() {
    let prism = Prism::start();
    // Prism serves the spec's paths at the root (it ignores basePath).
    let base = format!("http://127.0.0.1:{}", prism.port);
    let forge = GiteaForge::new(
        &base,
        "acme",
        "widgets",
        &Secret::new("any-token"),
        Duration::from_secs(20),
    );
    let n = IssueNumber::new(17).unwrap();
    let body = Text::new("A comment with \"quotes\" and ünïcode").unwrap();
    accepted(
        "preflight (GET /user, GET /repos, GET /issues)",
        forge.preflight(n),
    );
    accepted("read_issue", forge.read_issue(n));
    accepted("read_pr", forge.read_pr(n));
    accepted("read_comments", forge.read_comments(n));
    accepted("post_comment", forge.post_comment(n, &body));
    accepted("update_description", forge.update_description(n, &body));
    // The PR loop: branch names with a slash travel as one encoded segment.
    let title = Text::new("Render an empty widget").unwrap();
    accepted("default_branch (GET /repos)", forge.default_branch());
    accepted(
        "find_pr (GET /pulls/{base}/{head})",
        forge.find_pr("main", "agent/issue-17"),
    );
    accepted(
        "branch_commits (GET /compare/{basehead})",
        forge.branch_commits("main", "agent/issue-17"),
    );
    accepted(
        "open_pr (POST /pulls)",
        forge.open_pr("agent/issue-17", "main", &title, &body),
    );
    // Prism answers every page with its example: these read until the
    // page bound and report that, which still shows every request passed.
    accepted(
        "pr_commits (GET /pulls/{index}/commits)",
        forge.pr_commits(n),
    );
    accepted(
        "read_reviews (GET /pulls/{index}/reviews, .../reviews/{id}/comments)",
        forge.read_reviews(n),
    );
    accepted(
        "is_collaborator (GET /collaborators/{collaborator})",
        forge.is_collaborator("alice"),
    );
}
