//! Configuration (README, "Configuration"): flags and environment, validated into [`Config`].
//!
//! Every setting has an environment variable and a `serve` flag; flags win
//! (clap reads both). Values arrive as strings and are validated here in one
//! pass that collects every missing or bad setting ([`ConfigErrors`]), each
//! as one line naming the variable and the flag; the caller exits with 2.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use forge_protocol::event::Limits;
use forge_protocol::{BranchName, DescriptionMode, IssueNumber, TextRules};

use crate::read_guard::clean::Invisible;
use crate::read_guard::{ReadConfig, Trust};
use crate::text_check;
use forge_queue::note::SigningKey;

/// A secret whose `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that must send it (the Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which forge to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForgeKind {
    /// A Gitea (or Forgejo) server at FORGE_GITEA_API.
    Gitea,
    /// The built-in seeded in-memory forge (no network, nothing persisted).
    Memory,
}

/// The settings as given on the command line or in the environment.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Forge kind.
    #[arg(long, value_enum, default_value = "gitea", env = "FORGE_KIND")]
    pub forge: ForgeKind,
    /// Gitea API base including /api/v1.
    #[arg(long = "gitea-api", env = "FORGE_GITEA_API", value_name = "URL")]
    pub gitea_api: Option<String>,
    /// Repository owner.
    #[arg(long, env = "FORGE_OWNER")]
    pub owner: Option<String>,
    /// Repository name.
    #[arg(long, env = "FORGE_REPO")]
    pub repo: Option<String>,
    /// The assigned issue number (defines the write scope).
    #[arg(long = "issue", env = "FORGE_ISSUE_NUMBER", value_name = "N")]
    pub issue: Option<String>,
    /// Assigned PR numbers, comma-separated.
    #[arg(long = "pr", env = "FORGE_PR_NUMBER", value_name = "N,N")]
    pub prs: Option<String>,
    /// Branch this sandbox pushes its work to; open_pr opens its pull request.
    #[arg(long, env = "FORGE_BRANCH", value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Branches other than the default one that open_pr may target, comma-separated.
    #[arg(
        long = "base-branches",
        env = "FORGE_BASE_BRANCHES",
        value_name = "B,B"
    )]
    pub base_branches: Option<String>,
    /// Pull requests open_pr may open per run (the sessions of one FORGE_RUN_ID share them).
    #[arg(long = "max-prs", env = "FORGE_MAX_PRS", default_value = "1")]
    pub max_prs: String,
    /// Modes update_description may use, comma-separated (replace, append, section).
    #[arg(
        long = "description-modes",
        env = "FORGE_DESCRIPTION_MODES",
        value_name = "M,M",
        default_value = "replace,append,section"
    )]
    pub description_modes: String,
    /// File holding the forge token (preferred over FORGE_TOKEN).
    #[arg(long = "token-file", env = "FORGE_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// File holding the Ed25519 key that signs queue checkpoints
    /// (`forge-queue keygen`); without it, no checkpoints are written.
    #[arg(
        long = "signing-key-file",
        env = "FORGE_SIGNING_KEY_FILE",
        value_name = "PATH"
    )]
    pub signing_key_file: Option<PathBuf>,
    /// Socket path.
    #[arg(long, env = "FORGE_SOCKET", default_value = "/run/forge/forge.sock")]
    pub socket: PathBuf,
    /// Socket file mode (octal).
    #[arg(
        long = "socket-mode",
        env = "FORGE_SOCKET_MODE",
        default_value = "0660"
    )]
    pub socket_mode: String,
    /// Queue directory.
    #[arg(
        long = "queue-dir",
        env = "FORGE_QUEUE_DIR",
        default_value = "/run/forge/queue"
    )]
    pub queue_dir: PathBuf,
    /// Largest JSON-RPC request accepted, bytes.
    #[arg(
        long = "max-request-bytes",
        env = "FORGE_MAX_REQUEST_BYTES",
        default_value = "1048576"
    )]
    pub max_request_bytes: String,
    /// Largest comment/description body, bytes.
    #[arg(
        long = "max-body-bytes",
        env = "FORGE_MAX_BODY_BYTES",
        default_value = "65536"
    )]
    pub max_body_bytes: String,
    /// Forge writes allowed per run (the sessions of one FORGE_RUN_ID share them).
    #[arg(long = "max-writes", env = "FORGE_MAX_WRITES", default_value = "100")]
    pub max_writes: String,
    /// Whole-request timeout for forge calls, seconds.
    #[arg(
        long = "http-timeout-secs",
        env = "FORGE_HTTP_TIMEOUT_SECS",
        default_value = "30"
    )]
    pub http_timeout_secs: String,
    /// Heartbeat interval, seconds.
    #[arg(
        long = "heartbeat-secs",
        env = "FORGE_HEARTBEAT_SECS",
        default_value = "5"
    )]
    pub heartbeat_secs: String,
    /// Closing keywords the forge accepts beyond Gitea's defaults, comma-separated (app.ini CLOSE_KEYWORDS).
    #[arg(
        long = "close-keywords",
        env = "FORGE_CLOSE_KEYWORDS",
        value_name = "WORD,WORD"
    )]
    pub close_keywords: Option<String>,
    /// Reopening keywords beyond Gitea's defaults, comma-separated (app.ini REOPEN_KEYWORDS).
    #[arg(
        long = "reopen-keywords",
        env = "FORGE_REOPEN_KEYWORDS",
        value_name = "WORD,WORD"
    )]
    pub reopen_keywords: Option<String>,
    /// Most distinct references to issues/PRs outside the writable set per text.
    #[arg(
        long = "max-foreign-refs",
        env = "FORGE_MAX_FOREIGN_REFS",
        default_value = "10"
    )]
    pub max_foreign_refs: String,
    /// Most distinct @mentions per text.
    #[arg(long = "max-mentions", env = "FORGE_MAX_MENTIONS", default_value = "5")]
    pub max_mentions: String,
    /// The host's run: sessions of one run in one queue directory share the
    /// write budget and the done signal.
    #[arg(long = "run-id", env = "FORGE_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
    /// What the agent reads: hidden characters, trust, answer sizes.
    #[command(flatten)]
    pub read: ReadArgs,
}

/// The settings of what the agent reads (see [`crate::read_guard`]).
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// Hidden characters (tag, bidi, zero-width) in what the agent reads:
    /// strip (remove), mark (show as [U+XXXX]) or keep.
    #[arg(
        long = "read-invisible",
        env = "FORGE_READ_INVISIBLE",
        default_value = "strip"
    )]
    pub invisible: String,
    /// Whose texts the agent reads: all, or collaborators (the owner, the
    /// repository's collaborators and FORGE_TRUSTED_USERS; others' are withheld).
    #[arg(long = "read-trust", env = "FORGE_READ_TRUST", default_value = "all")]
    pub trust: String,
    /// Logins whose texts are shown under FORGE_READ_TRUST=collaborators, comma-separated.
    #[arg(
        long = "trusted-users",
        env = "FORGE_TRUSTED_USERS",
        value_name = "LOGIN,LOGIN"
    )]
    pub trusted_users: Option<String>,
    /// Most bytes of one answer of read_comments or read_reviews.
    #[arg(
        long = "max-read-bytes",
        env = "FORGE_MAX_READ_BYTES",
        default_value = "65536"
    )]
    pub max_read_bytes: String,
    /// Most bytes of one text read (a body, a comment, a diff hunk); longer ones are cut, saying so.
    #[arg(
        long = "max-field-bytes",
        env = "FORGE_MAX_FIELD_BYTES",
        default_value = "32768"
    )]
    pub max_field_bytes: String,
}

impl ReadArgs {
    /// The validated read settings, or `None` after recording the problems.
    fn validate(&self, problems: &mut Problems) -> Option<ReadConfig> {
        let invisible = problems.take(Invisible::parse(&self.invisible).ok_or_else(|| {
            bad(
                "FORGE_READ_INVISIBLE (--read-invisible)",
                format!("'{}' is not one of strip, mark, keep", self.invisible),
            )
        }));
        let trust = problems.take(Trust::parse(&self.trust).ok_or_else(|| {
            bad(
                "FORGE_READ_TRUST (--read-trust)",
                format!("'{}' is not one of all, collaborators", self.trust),
            )
        }));
        let trusted_users = problems.take(
            self.trusted_users
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|u| {
                    check_name("FORGE_TRUSTED_USERS (--trusted-users)", u)
                        .map(|()| u.to_ascii_lowercase())
                })
                .collect::<Result<Vec<_>, _>>(),
        );
        const READ: &str = "FORGE_MAX_READ_BYTES (--max-read-bytes)";
        const FIELD: &str = "FORGE_MAX_FIELD_BYTES (--max-field-bytes)";
        let max_read: Option<u32> = problems.take(parse_positive(READ, &self.max_read_bytes));
        let max_read = problems.take(match max_read {
            Some(n) if !(4096..=(16 << 20)).contains(&n) => Err(bad(
                READ,
                format!("{n} is out of range; give 4096 to 16777216 bytes"),
            )),
            other => Ok(other),
        });
        let max_field: Option<u32> = problems.take(parse_positive(FIELD, &self.max_field_bytes));
        let max_field = problems.take(match (max_field, max_read.flatten()) {
            (Some(field), Some(read)) if field < 1024 || field > read / 2 => Err(bad(
                FIELD,
                format!(
                    "{field} is out of range; give 1024 bytes up to half of FORGE_MAX_READ_BYTES ({})",
                    read / 2
                ),
            )),
            (field, _) => Ok(field),
        });
        Some(ReadConfig {
            invisible: invisible?,
            trust: trust?,
            trusted_users: trusted_users?,
            max_read_bytes: max_read.flatten()? as usize,
            max_field_bytes: max_field.flatten()? as usize,
        })
    }
}

/// Where the forge is and how to authenticate.
#[derive(Debug, Clone)]
pub enum ForgeConfig {
    /// A Gitea server.
    Gitea {
        /// API base including /api/v1, without a trailing slash.
        api_base: String,
        /// The token.
        token: Secret,
    },
    /// The in-memory forge.
    Memory,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The forge.
    pub forge: ForgeConfig,
    /// Repository owner.
    pub owner: String,
    /// Repository name.
    pub repo: String,
    /// The assigned issue.
    pub issue: IssueNumber,
    /// The assigned PRs.
    pub prs: Vec<IssueNumber>,
    /// The branch this sandbox pushes to (`open_pr`'s head), if configured.
    pub branch: Option<BranchName>,
    /// Bases `open_pr` may target besides the default branch.
    pub base_branches: Vec<BranchName>,
    /// Pull requests `open_pr` may open per run.
    pub max_prs: u32,
    /// The modes `update_description` may use.
    pub description_modes: Vec<DescriptionMode>,
    /// Socket path.
    pub socket: PathBuf,
    /// Socket file mode.
    pub socket_mode: u32,
    /// Queue directory.
    pub queue_dir: PathBuf,
    /// Largest JSON-RPC request, bytes.
    pub max_request_bytes: u32,
    /// Largest body, bytes.
    pub max_body_bytes: usize,
    /// Forge writes per run.
    pub max_writes: u32,
    /// Forge request timeout.
    pub http_timeout: Duration,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Keywords and per-text limits every written text is checked against.
    pub text: TextRules,
    /// Signs checkpoints of the queue; `Debug` prints `***`.
    pub signing_key: Option<SigningKey>,
    /// The host's run (`None`: the run of every session without one).
    pub run_id: Option<String>,
    /// What the agent reads: hidden characters, trust, answer sizes.
    pub read: ReadConfig,
}

impl Config {
    /// The limits as recorded in `session_start`.
    pub fn limits(&self) -> Limits {
        Limits {
            max_request_bytes: u64::from(self.max_request_bytes),
            max_body_bytes: self.max_body_bytes as u64,
            max_writes: self.max_writes,
            http_timeout_secs: self.http_timeout.as_secs(),
            heartbeat_secs: self.heartbeat.as_secs(),
        }
    }

    /// `gitea at URL` or `memory`, for messages.
    pub fn forge_label(&self) -> String {
        match &self.forge {
            ForgeConfig::Gitea { api_base, .. } => format!("gitea at {api_base}"),
            ForgeConfig::Memory => "memory".into(),
        }
    }

    /// The writable numbers: the assigned issue and its PRs.
    pub fn writable(&self) -> Vec<IssueNumber> {
        let mut all = vec![self.issue];
        all.extend(self.prs.iter().copied().filter(|p| *p != self.issue));
        all
    }
}

/// A setting that is missing or wrong; its `Display` is the one line to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {setting}: {problem}")]
pub struct ConfigError {
    /// The setting, as `FORGE_X (--flag)`.
    pub setting: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
}

/// Every problem found in one validation pass, in the order of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, one per setting.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects the problems of a validation pass while the pass goes on.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

/// The validated repository and assignment, before they go into [`Config`].
struct Target {
    owner: String,
    repo: String,
    issue: IssueNumber,
    prs: Vec<IssueNumber>,
    branch: Option<BranchName>,
    base_branches: Vec<BranchName>,
    max_prs: u32,
}

/// The validated limits, before they go into [`Config`].
struct Bounds {
    max_request_bytes: u32,
    max_body_bytes: u32,
    max_writes: u32,
    timeout: u32,
    heartbeat: u32,
}

impl Problems {
    /// The value, or `None` after recording its problem.
    fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }
}

/// What `--help` adds for the settings read only from the environment.
pub const ENV_HELP: &str = "\
Also read from the environment (no flag):
  FORGE_TOKEN  the forge token, when FORGE_TOKEN_FILE is not set; removed from
               the process environment after reading (prefer the file: other
               processes of the same user can read /proc/PID/environ)
  FORGE_LOG    log filter in tracing's EnvFilter syntax [default: info], e.g.
               debug or forge_sidecar=debug; logs go to stderr

Every flag above can also be given by the environment variable shown beside
it; a flag wins over its variable.";

fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

/// Where the token comes from, read once at start.
#[derive(Debug, Clone, Default)]
pub struct TokenSource {
    /// `FORGE_TOKEN` as it was in the environment (removed from it by the binary).
    pub env_token: Option<Secret>,
}

impl ConfigArgs {
    /// Validate into a [`Config`], reporting every missing or bad setting at once.
    pub fn validate(&self, tokens: &TokenSource) -> Result<Config, ConfigErrors> {
        let mut problems = Problems::default();
        let target = self.validate_target(&mut problems);
        let forge = match self.forge {
            ForgeKind::Memory => Some(ForgeConfig::Memory),
            ForgeKind::Gitea => {
                let api_base = problems.take(self.api_base());
                let token = problems.take(self.token(tokens));
                api_base
                    .zip(token)
                    .map(|(api_base, token)| ForgeConfig::Gitea { api_base, token })
            }
        };
        let socket_mode = self.validate_socket(&mut problems);
        let limits = self.validate_limits(&mut problems);
        let signing_key = problems.take(self.signing_key());
        let run_id = problems.take(parse_run_id(self.run_id.as_deref()));
        let text = self.validate_text(&mut problems);
        let read = self.read.validate(&mut problems);
        let description_modes = problems.take(parse_modes(&self.description_modes));
        let (
            Some(forge),
            Some(target),
            Some(socket_mode),
            Some(limits),
            Some(signing_key),
            Some(text),
            Some(read),
            Some(description_modes),
        ) = (
            forge,
            target,
            socket_mode,
            limits,
            signing_key,
            text,
            read,
            description_modes,
        )
        else {
            return Err(ConfigErrors(problems.0));
        };
        if !problems.0.is_empty() {
            return Err(ConfigErrors(problems.0));
        }
        Ok(Config {
            forge,
            owner: target.owner,
            repo: target.repo,
            issue: target.issue,
            prs: target.prs,
            branch: target.branch,
            base_branches: target.base_branches,
            max_prs: target.max_prs,
            description_modes,
            socket: self.socket.clone(),
            socket_mode,
            queue_dir: self.queue_dir.clone(),
            max_request_bytes: limits.max_request_bytes,
            max_body_bytes: limits.max_body_bytes as usize,
            max_writes: limits.max_writes,
            http_timeout: Duration::from_secs(limits.timeout.into()),
            heartbeat: Duration::from_secs(limits.heartbeat.into()),
            text,
            signing_key,
            run_id: run_id.flatten(),
            read,
        })
    }

    /// The repository, the assigned issue and PRs, and what `open_pr` may do.
    fn validate_target(&self, problems: &mut Problems) -> Option<Target> {
        let memory = self.forge == ForgeKind::Memory;
        // The in-memory forge has sample data for acme/widgets #17 with PRs #18 and #19.
        let default =
            |v: &Option<String>, d: &str| v.clone().or_else(|| memory.then(|| d.to_string()));
        let name = |setting: &'static str, v: Option<String>, what: &str| {
            let v = v.ok_or_else(|| bad(setting, format!("missing; set the {what}")))?;
            check_name(setting, &v).map(|()| v)
        };
        let owner = problems.take(name(
            "FORGE_OWNER (--owner)",
            default(&self.owner, "acme"),
            "repository owner",
        ));
        let repo = problems.take(name(
            "FORGE_REPO (--repo)",
            default(&self.repo, "widgets"),
            "repository name",
        ));
        let issue = problems.take(
            default(&self.issue, "17")
                .ok_or_else(|| {
                    bad(
                        "FORGE_ISSUE_NUMBER (--issue)",
                        "missing; set the assigned issue number",
                    )
                })
                .and_then(|v| parse_number("FORGE_ISSUE_NUMBER (--issue)", &v)),
        );
        let prs = problems.take(match default(&self.prs, "18,19") {
            None => Ok(vec![]),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| parse_number("FORGE_PR_NUMBER (--pr)", s))
                .collect::<Result<_, _>>(),
        });
        let branch = problems.take(
            self.branch
                .as_deref()
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(|b| parse_branch("FORGE_BRANCH (--branch)", b))
                .transpose(),
        );
        let base_branches = problems.take(
            self.base_branches
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|b| parse_branch("FORGE_BASE_BRANCHES (--base-branches)", b))
                .collect::<Result<Vec<_>, _>>(),
        );
        if let (Some(Some(head)), Some(bases)) = (&branch, &base_branches)
            && bases.contains(head)
        {
            problems.take::<()>(Err(bad(
                "FORGE_BASE_BRANCHES (--base-branches)",
                format!("lists '{head}', the FORGE_BRANCH itself; a pull request cannot merge a branch into itself"),
            )));
        }
        let max_prs: Option<u32> =
            problems.take(parse_nonneg("FORGE_MAX_PRS (--max-prs)", &self.max_prs));
        Some(Target {
            owner: owner?,
            repo: repo?,
            issue: issue?,
            prs: prs?,
            branch: branch?,
            base_branches: base_branches?,
            max_prs: max_prs?,
        })
    }

    /// The socket's path length and mode.
    fn validate_socket(&self, problems: &mut Problems) -> Option<u32> {
        let socket_len = self.socket.as_os_str().len();
        problems.take(if socket_len == 0 || socket_len > 107 {
            Err(bad(
                "FORGE_SOCKET (--socket)",
                format!("path must be 1 to 107 bytes long (it is {socket_len})"),
            ))
        } else {
            Ok(())
        });
        problems.take(
            u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| {
                    bad(
                        "FORGE_SOCKET_MODE (--socket-mode)",
                        format!("'{}' is not an octal mode such as 0660", self.socket_mode),
                    )
                }),
        )
    }

    /// Request and body sizes, writes, timeouts.
    fn validate_limits(&self, problems: &mut Problems) -> Option<Bounds> {
        let max_request_bytes: Option<u32> = problems.take(parse_positive(
            "FORGE_MAX_REQUEST_BYTES (--max-request-bytes)",
            &self.max_request_bytes,
        ));
        let max_body_bytes: Option<u32> = problems.take(parse_positive(
            "FORGE_MAX_BODY_BYTES (--max-body-bytes)",
            &self.max_body_bytes,
        ));
        if let (Some(body), Some(request)) = (max_body_bytes, max_request_bytes)
            && body >= request
        {
            problems.take::<()>(Err(bad(
                "FORGE_MAX_BODY_BYTES (--max-body-bytes)",
                format!("{body} must be smaller than FORGE_MAX_REQUEST_BYTES ({request})"),
            )));
        }
        let max_writes: Option<u32> = problems.take(parse_nonneg(
            "FORGE_MAX_WRITES (--max-writes)",
            &self.max_writes,
        ));
        let timeout: Option<u32> = problems.take(parse_positive(
            "FORGE_HTTP_TIMEOUT_SECS (--http-timeout-secs)",
            &self.http_timeout_secs,
        ));
        let heartbeat: Option<u32> = problems.take(parse_positive(
            "FORGE_HEARTBEAT_SECS (--heartbeat-secs)",
            &self.heartbeat_secs,
        ));
        Some(Bounds {
            max_request_bytes: max_request_bytes?,
            max_body_bytes: max_body_bytes?,
            max_writes: max_writes?,
            timeout: timeout?,
            heartbeat: heartbeat?,
        })
    }

    /// The keywords and per-text limits of the text checker.
    fn validate_text(&self, problems: &mut Problems) -> Option<TextRules> {
        let close_keywords = problems.take(
            text_check::keyword_list(
                &text_check::DEFAULT_CLOSE_KEYWORDS,
                self.close_keywords.as_deref().unwrap_or_default(),
            )
            .map_err(|e| bad("FORGE_CLOSE_KEYWORDS (--close-keywords)", e)),
        );
        let reopen_keywords = problems.take(
            text_check::keyword_list(
                &text_check::DEFAULT_REOPEN_KEYWORDS,
                self.reopen_keywords.as_deref().unwrap_or_default(),
            )
            .map_err(|e| bad("FORGE_REOPEN_KEYWORDS (--reopen-keywords)", e)),
        );
        let max_foreign_refs = problems.take(parse_text_limit(
            "FORGE_MAX_FOREIGN_REFS (--max-foreign-refs)",
            &self.max_foreign_refs,
        ));
        let max_mentions = problems.take(parse_text_limit(
            "FORGE_MAX_MENTIONS (--max-mentions)",
            &self.max_mentions,
        ));
        Some(TextRules {
            close_keywords: close_keywords?,
            reopen_keywords: reopen_keywords?,
            max_foreign_refs: max_foreign_refs?,
            max_mentions: max_mentions?,
        })
    }

    fn signing_key(&self) -> Result<Option<SigningKey>, ConfigError> {
        const SETTING: &str = "FORGE_SIGNING_KEY_FILE (--signing-key-file)";
        let Some(path) = &self.signing_key_file else {
            return Ok(None);
        };
        // Whoever reads the key can sign checkpoints, a done among them.
        let raw = read_private(path, SETTING, "sign checkpoints")?;
        // The parse error names what is wrong, never the key material.
        SigningKey::parse(&raw).map(Some).map_err(|e| {
            bad(
                SETTING,
                format!(
                    "{}: {e}; create one with `forge-queue keygen NAME`",
                    path.display()
                ),
            )
        })
    }

    fn api_base(&self) -> Result<String, ConfigError> {
        const SETTING: &str = "FORGE_GITEA_API (--gitea-api)";
        let api = self.gitea_api.as_deref().map(str::trim).unwrap_or_default();
        if api.is_empty() {
            return Err(bad(
                SETTING,
                "missing; set the API base such as https://gitea.example.com/api/v1 (or use --forge memory)",
            ));
        }
        if !(api.starts_with("http://") || api.starts_with("https://"))
            || api.contains(['?', '#', ' '])
        {
            return Err(bad(
                SETTING,
                format!("'{api}' is not an http(s) URL such as https://gitea.example.com/api/v1"),
            ));
        }
        Ok(api.trim_end_matches('/').to_string())
    }

    fn token(&self, tokens: &TokenSource) -> Result<Secret, ConfigError> {
        const SETTING: &str = "FORGE_TOKEN_FILE (--token-file)";
        let token = match &self.token_file {
            Some(path) => {
                // Whoever reads the token can act on the forge as the bot,
                // anywhere its account reaches.
                let raw = read_private(path, SETTING, "act on the forge as the sidecar")?;
                Secret::new(raw.trim())
            }
            None => tokens.env_token.clone().ok_or_else(|| {
                bad(SETTING, "missing; put the forge token in a file and set FORGE_TOKEN_FILE (or set FORGE_TOKEN)")
            })?,
        };
        if token.expose().is_empty() || token.expose().contains(char::is_whitespace) {
            return Err(bad(SETTING, "the token is empty or contains whitespace"));
        }
        Ok(token)
    }
}

/// Read a secret file that only its owner may read or write: a file the
/// group or others can open (the agent's user, say) is refused, naming the
/// mode and `chmod 600`. The mode is checked on the open file, so a file
/// swapped after the check is not read instead.
fn read_private(path: &Path, setting: &'static str, grants: &str) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let cannot = |e: std::io::Error| bad(setting, format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    let mode = file.metadata().map_err(cannot)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(bad(
            setting,
            format!(
                "{} may be read by other users (mode {:04o}) and whoever reads it can {grants}; \
                 make it readable by the sidecar's user only: chmod 600 {}",
                path.display(),
                mode & 0o7777,
                path.display()
            ),
        ));
    }
    let mut raw = String::new();
    file.read_to_string(&mut raw).map_err(cannot)?;
    Ok(raw)
}

/// `FORGE_RUN_ID`: absent or empty is no run id; otherwise 1 to 128 of
/// letters, digits and `-_.:`.
fn parse_run_id(id: Option<&str>) -> Result<Option<String>, ConfigError> {
    let id = match id.map(str::trim) {
        None | Some("") => return Ok(None),
        Some(id) => id,
    };
    let ok = id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !ok {
        return Err(bad(
            "FORGE_RUN_ID (--run-id)",
            format!(
                "'{}' is not a run id: use 1 to 128 letters, digits, '-', '_', '.' or ':'",
                forge_protocol::echo::quote(id)
            ),
        ));
    }
    Ok(Some(id.to_string()))
}

fn check_name(setting: &'static str, v: &str) -> Result<(), ConfigError> {
    let ok = !v.is_empty()
        && v.len() <= 100
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v != "."
        && v != "..";
    if ok {
        Ok(())
    } else {
        Err(bad(
            setting,
            format!("'{v}' is not a valid owner or repository name"),
        ))
    }
}

fn parse_branch(setting: &'static str, v: &str) -> Result<BranchName, ConfigError> {
    BranchName::new(v).ok_or_else(|| {
        bad(
            setting,
            format!("'{v}' is not a branch name git accepts, such as agent/issue-17"),
        )
    })
}

fn parse_number(setting: &'static str, v: &str) -> Result<IssueNumber, ConfigError> {
    v.trim()
        .parse::<u64>()
        .ok()
        .and_then(IssueNumber::new)
        .ok_or_else(|| bad(setting, format!("'{v}' is not a positive issue number")))
}

/// A per-text limit: 0 to [`text_check::MAX_TEXT_LIMIT`] (each one found is
/// listed in the audit event, which stays bounded).
fn parse_text_limit(setting: &'static str, v: &str) -> Result<u32, ConfigError> {
    let n: u32 = parse_nonneg(setting, v)?;
    if n > text_check::MAX_TEXT_LIMIT {
        return Err(bad(
            setting,
            format!(
                "{n} is over {}: every reference and mention of a text is listed in its audit event",
                text_check::MAX_TEXT_LIMIT
            ),
        ));
    }
    Ok(n)
}

/// `FORGE_DESCRIPTION_MODES`: one or more of `replace`, `append`, `section`.
fn parse_modes(raw: &str) -> Result<Vec<DescriptionMode>, ConfigError> {
    const SETTING: &str = "FORGE_DESCRIPTION_MODES (--description-modes)";
    let mut modes = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mode = DescriptionMode::from_name(&name.to_ascii_lowercase()).ok_or_else(|| {
            bad(
                SETTING,
                format!("'{name}' is not a mode; use replace, append or section, comma-separated"),
            )
        })?;
        if !modes.contains(&mode) {
            modes.push(mode);
        }
    }
    if modes.is_empty() {
        return Err(bad(
            SETTING,
            "lists no mode; name at least one of replace, append, section",
        ));
    }
    Ok(modes)
}

fn parse_nonneg<T: std::str::FromStr>(setting: &'static str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| bad(setting, format!("'{v}' is not a whole number in range")))
}

fn parse_positive<T: std::str::FromStr + PartialEq + Default>(
    setting: &'static str,
    v: &str,
) -> Result<T, ConfigError> {
    let n: T = parse_nonneg(setting, v)?;
    if n == T::default() {
        return Err(bad(setting, "must be greater than 0"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConfigArgs,
    }

    fn parse(argv: &[&str]) -> Result<Config, ConfigErrors> {
        let mut full = vec!["x"];
        full.extend_from_slice(argv);
        Cli::parse_from(full).args.validate(&TokenSource::default())
    }

    #[test]
    fn memory_forge_has_defaults() {
        let c = parse(&["--forge", "memory"]).unwrap();
        assert_eq!(
            (c.owner.as_str(), c.repo.as_str(), c.issue.get()),
            ("acme", "widgets", 17)
        );
        assert_eq!(
            c.writable().iter().map(|n| n.get()).collect::<Vec<_>>(),
            vec![17, 18, 19]
        );
        assert_eq!(c.socket_mode, 0o660);
    }

    #[test]
    fn errors_name_the_setting() {
        let e = parse(&["--forge", "memory", "--max-writes", "lots"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("FORGE_MAX_WRITES (--max-writes): 'lots'"),
            "{e}"
        );
        let e = parse(&["--forge", "memory", "--issue", "0"]).unwrap_err();
        assert!(e.to_string().contains("FORGE_ISSUE_NUMBER"), "{e}");
        let e = parse(&["--forge", "memory", "--owner", "../etc"]).unwrap_err();
        assert!(e.to_string().contains("FORGE_OWNER"), "{e}");
    }

    #[test]
    fn keywords_add_to_the_defaults_and_limits_parse() {
        let c = parse(&["--forge", "memory"]).unwrap();
        assert_eq!(c.text, text_check::default_rules());
        let c = parse(&[
            "--forge",
            "memory",
            "--close-keywords",
            " Schliesst, behebt ,fixes,",
            "--reopen-keywords",
            "öffnet",
            "--max-foreign-refs",
            "0",
            "--max-mentions",
            "2",
        ])
        .unwrap();
        assert_eq!(c.text.close_keywords.len(), 11);
        assert!(
            c.text
                .close_keywords
                .ends_with(&["schliesst".into(), "behebt".into()])
        );
        assert_eq!(c.text.reopen_keywords.last().unwrap(), "öffnet");
        assert_eq!((c.text.max_foreign_refs, c.text.max_mentions), (0, 2));
        let e = parse(&["--forge", "memory", "--close-keywords", "fix-it"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("FORGE_CLOSE_KEYWORDS (--close-keywords): 'fix-it'"),
            "{e}"
        );
        let e = parse(&["--forge", "memory", "--max-mentions=-1"]).unwrap_err();
        assert!(e.to_string().contains("FORGE_MAX_MENTIONS"), "{e}");
        let e = parse(&["--forge", "memory", "--max-foreign-refs", "51"]).unwrap_err();
        assert!(e.to_string().contains("51 is over 50"), "{e}");
    }

    #[test]
    fn read_settings_parse_and_bad_ones_are_named() {
        let c = parse(&["--forge", "memory"]).unwrap();
        assert_eq!(c.read, ReadConfig::default());
        let c = parse(&[
            "--forge",
            "memory",
            "--read-invisible",
            "MARK",
            "--read-trust",
            "collaborators",
            "--trusted-users",
            "Carol, dave",
            "--max-read-bytes",
            "8192",
            "--max-field-bytes",
            "4096",
        ])
        .unwrap();
        assert_eq!(
            c.read,
            ReadConfig {
                invisible: Invisible::Mark,
                trust: Trust::Collaborators,
                trusted_users: vec!["carol".into(), "dave".into()],
                max_read_bytes: 8192,
                max_field_bytes: 4096,
            }
        );
        let e = parse(&[
            "--forge",
            "memory",
            "--read-invisible",
            "hide",
            "--read-trust",
            "friends",
            "--trusted-users",
            "a b",
            "--max-read-bytes",
            "100",
            "--max-field-bytes",
            "99999999",
        ])
        .unwrap_err();
        let settings: Vec<&str> = e.iter().map(|p| p.setting).collect();
        assert_eq!(
            settings,
            [
                "FORGE_READ_INVISIBLE (--read-invisible)",
                "FORGE_READ_TRUST (--read-trust)",
                "FORGE_TRUSTED_USERS (--trusted-users)",
                "FORGE_MAX_READ_BYTES (--max-read-bytes)",
            ],
            "{e}"
        );
        let e = parse(&["--forge", "memory", "--max-field-bytes", "40000"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("give 1024 bytes up to half of FORGE_MAX_READ_BYTES (32768)"),
            "{e}"
        );
    }

    #[test]
    fn description_modes_default_to_all_and_are_checked() {
        let c = parse(&["--forge", "memory"]).unwrap();
        assert_eq!(c.description_modes, DescriptionMode::ALL);
        let c = parse(&[
            "--forge",
            "memory",
            "--description-modes",
            "Append, section",
        ])
        .unwrap();
        assert_eq!(
            c.description_modes,
            [DescriptionMode::Append, DescriptionMode::Section]
        );
        for bad in ["prepend", " , "] {
            let e = parse(&["--forge", "memory", "--description-modes", bad]).unwrap_err();
            assert!(
                e.to_string().contains("FORGE_DESCRIPTION_MODES"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn run_id_is_optional_and_checked() {
        assert_eq!(parse(&["--forge", "memory"]).unwrap().run_id, None);
        let c = parse(&["--forge", "memory", "--run-id", "job-42:try.1"]).unwrap();
        assert_eq!(c.run_id.as_deref(), Some("job-42:try.1"));
        let e = parse(&["--forge", "memory", "--run-id", "a b"]).unwrap_err();
        assert!(e.to_string().contains("FORGE_RUN_ID (--run-id)"), "{e}");
    }

    #[test]
    fn gitea_needs_api_and_token() {
        let e = parse(&["--owner", "o", "--repo", "r", "--issue", "1"]).unwrap_err();
        assert!(e.0[0].setting.starts_with("FORGE_GITEA_API"), "{e}");
        let e = parse(&[
            "--owner",
            "o",
            "--repo",
            "r",
            "--issue",
            "1",
            "--gitea-api",
            "http://h/api/v1",
        ])
        .unwrap_err();
        assert!(e.0[0].setting.starts_with("FORGE_TOKEN_FILE"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_in_one_pass() {
        // Nothing set for Gitea, and a bad value besides: all of them, in order.
        let e = parse(&["--max-writes", "lots"]).unwrap_err();
        let settings: Vec<&str> = e.iter().map(|p| p.setting).collect();
        assert_eq!(
            settings,
            [
                "FORGE_OWNER (--owner)",
                "FORGE_REPO (--repo)",
                "FORGE_ISSUE_NUMBER (--issue)",
                "FORGE_GITEA_API (--gitea-api)",
                "FORGE_TOKEN_FILE (--token-file)",
                "FORGE_MAX_WRITES (--max-writes)",
            ],
            "{e}"
        );
        assert_eq!(e.to_string().lines().count(), 6, "{e}");
    }

    #[test]
    fn branch_settings() {
        let c = parse(&["--forge", "memory"]).unwrap();
        assert_eq!((c.branch.clone(), c.max_prs), (None, 1));
        let c = parse(&[
            "--forge",
            "memory",
            "--branch",
            "agent/issue-17",
            "--base-branches",
            "develop, release/2.0",
            "--max-prs",
            "2",
        ])
        .unwrap();
        assert_eq!(c.branch.unwrap().as_str(), "agent/issue-17");
        assert_eq!(c.base_branches.len(), 2);
        assert_eq!(c.max_prs, 2);
        let e = parse(&[
            "--forge",
            "memory",
            "--branch",
            "bad branch",
            "--base-branches",
            "x..y",
            "--max-prs",
            "many",
        ])
        .unwrap_err();
        let settings: Vec<&str> = e.iter().map(|p| p.setting).collect();
        assert_eq!(
            settings,
            [
                "FORGE_BRANCH (--branch)",
                "FORGE_BASE_BRANCHES (--base-branches)",
                "FORGE_MAX_PRS (--max-prs)"
            ],
            "{e}"
        );
        let e = parse(&["--forge", "memory", "--branch", "a", "--base-branches", "a"]).unwrap_err();
        assert!(e.to_string().contains("into itself"), "{e}");
    }

    #[test]
    fn token_file_is_read_and_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-value\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let args = [
            "--owner",
            "o",
            "--repo",
            "r",
            "--issue",
            "1",
            "--gitea-api",
            "http://h/api/v1/",
            "--token-file",
            path.to_str().unwrap(),
        ];
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = parse(&args).unwrap_err();
            assert_eq!(e.0.len(), 1, "{e}");
            assert_eq!(e.0[0].setting, "FORGE_TOKEN_FILE (--token-file)");
            let text = e.to_string();
            assert!(
                text.contains(&format!("mode {mode:04o}")) && text.contains("chmod 600"),
                "{text}"
            );
            assert!(!text.contains("s3cret"), "{text}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = parse(&args).unwrap();
        let ForgeConfig::Gitea { api_base, token } = &c.forge else {
            panic!("gitea expected")
        };
        assert_eq!(api_base, "http://h/api/v1");
        assert_eq!(token.expose(), "s3cret-value");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn signing_key_file_is_read_and_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.skey");
        let key = SigningKey::generate("bottle").unwrap();
        std::fs::write(&path, format!("{}\n", key.expose_encoded())).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = path.to_str().unwrap();
        let c = parse(&["--forge", "memory", "--signing-key-file", p]).unwrap();
        let got = c.signing_key.as_ref().unwrap();
        assert_eq!(got.verifier(), key.verifier());
        let secret = key.expose_encoded();
        // The key is everything after the fourth '+' (base64 may hold '+').
        let seed = secret.splitn(5, '+').nth(4).unwrap();
        assert!(seed.len() > 40, "{seed}");
        assert!(!format!("{c:?}").contains(seed));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = parse(&["--forge", "memory", "--signing-key-file", p]).unwrap_err();
        assert!(e.to_string().contains("mode 0644"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "PRIVATE+KEY+bottle+00000000+AAAA\n").unwrap();
        let e = parse(&["--forge", "memory", "--signing-key-file", p]).unwrap_err();
        assert!(e.0[0].setting.starts_with("FORGE_SIGNING_KEY_FILE"), "{e}");
        assert!(!e.to_string().contains("AAAA"), "{e}");
        assert!(parse(&["--forge", "memory"]).unwrap().signing_key.is_none());
    }
}
