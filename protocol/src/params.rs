//! Method names and their parameters, with the validation every entry path shares.
//!
//! Parameters may come by name (`{"number": 17}`) or by position (`[17]`).
//! [`Method::check_params`] is the strict reading used by the server before
//! dispatch: unknown fields and surplus positions are refused, naming them.
//!
//! [`Method::with_types`] is the one table from a method to its parameter and
//! result types; the strict check and the JSON Schemas ([`crate::schema`]) are
//! both derived from it.

use std::fmt;
use std::num::NonZeroU64;

use schemars::JsonSchema;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::read::{CommentPage, PageParams, ReviewPage};
use crate::types::{Comment, DoneReceipt, DoneStatus, Issue, PullRequest, ScopeInfo, Updated};

/// An issue or pull request number: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct IssueNumber(#[schemars(range(min = 1))] NonZeroU64);

impl IssueNumber {
    /// `Some` for any positive number.
    pub fn new(n: u64) -> Option<Self> {
        NonZeroU64::new(n).map(IssueNumber)
    }

    /// The number as an integer.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for IssueNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl<'de> Deserialize<'de> for IssueNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        const WANT: &str = "a positive integer issue or PR number such as 17";
        impl Visitor<'_> for NumberVisitor {
            type Value = IssueNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(WANT)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IssueNumber, E> {
                IssueNumber::new(v).ok_or_else(|| E::custom(format!("got 0, expected {WANT}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IssueNumber, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("got {v}, expected {WANT}"))),
                }
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<IssueNumber, E> {
                Err(E::custom(format!("got {v}, too large; expected {WANT}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IssueNumber, E> {
                Err(E::custom(format!("got {v}, expected {WANT}")))
            }
        }
        d.deserialize_u64(NumberVisitor)
    }
}

/// Non-empty text: a comment, a description or a done summary.
///
/// Emptiness is refused here; the size limit depends on the configuration and
/// is enforced by the server (`limit_exceeded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Text(#[schemars(length(min = 1))] String);

impl Text {
    /// `Some` unless `s` is empty or only whitespace.
    pub fn new(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        (!s.trim().is_empty()).then_some(Text(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Length in bytes (UTF-8).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `Text` is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Text::new(s).ok_or_else(|| de::Error::custom("text is empty; send a non-empty string"))
    }
}

/// Parameters of `read_issue` and `read_pr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NumberParams {
    /// Issue or pull request number (any in the repository).
    pub number: IssueNumber,
}

/// Parameters of `post_comment` and `update_description`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// The assigned issue or one of its pull requests (see `scope`).
    pub number: IssueNumber,
    /// Markdown text: the comment, or the new description.
    pub body: Text,
}

/// How `update_description` treats the description already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DescriptionMode {
    /// The text becomes the whole description (what was there is gone).
    #[default]
    Replace,
    /// The text is added after the description already there.
    Append,
    /// The text goes between the sidecar's own begin and end markers; the
    /// rest of the description stays as it is.
    Section,
}

impl DescriptionMode {
    /// Every mode, in documentation order.
    pub const ALL: [DescriptionMode; 3] = [
        DescriptionMode::Replace,
        DescriptionMode::Append,
        DescriptionMode::Section,
    ];

    /// The wire name: `replace`, `append` or `section`.
    pub fn as_str(self) -> &'static str {
        match self {
            DescriptionMode::Replace => "replace",
            DescriptionMode::Append => "append",
            DescriptionMode::Section => "section",
        }
    }

    /// The mode with this wire name.
    pub fn from_name(name: &str) -> Option<DescriptionMode> {
        DescriptionMode::ALL
            .into_iter()
            .find(|m| m.as_str() == name)
    }
}

impl fmt::Display for DescriptionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parameters of `update_description`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescriptionParams {
    /// The assigned issue or one of its pull requests (see `scope`).
    pub number: IssueNumber,
    /// Markdown text: the new description, or the part to add (see `mode`).
    pub body: Text,
    /// `replace` (default: the text becomes the whole description),
    /// `append` (added after the current description) or `section` (kept
    /// between the sidecar's own markers; the rest is left as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<DescriptionMode>,
}

/// Parameters of `signal_done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DoneParams {
    /// `success`, `failure` or `blocked` (needs a human).
    pub status: DoneStatus,
    /// What was done, or what blocks it, for the human reading the result.
    pub summary: Text,
}

/// A branch name (`main`, `release/2.0`): non-empty, no whitespace or
/// control characters, and none of the characters git forbids in a ref.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct BranchName(#[schemars(length(min = 1, max = 255))] String);

impl BranchName {
    /// `Some` for a name git could have as a branch.
    pub fn new(s: impl Into<String>) -> Option<Self> {
        let s = s.into();
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c);
        let ok = !s.is_empty()
            && s.len() <= 255
            && !s.chars().any(bad_char)
            && !s.starts_with(['/', '-', '.'])
            && !s.ends_with(['/', '.'])
            && !s.ends_with(".lock")
            && !s.contains("..")
            && !s.contains("//")
            && !s.contains("@{");
        ok.then_some(BranchName(s))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BranchName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BranchName::new(s.clone()).ok_or_else(|| {
            de::Error::custom(format!(
                "`{}` is not a branch name; send a name such as `main`",
                crate::echo::quote(&s.escape_debug().to_string())
            ))
        })
    }
}

/// Parameters of `open_pr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenPrParams {
    /// Title of the pull request.
    pub title: Text,
    /// Markdown description of the pull request.
    pub body: Text,
    /// Branch to merge into; the repository's default branch when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BranchName>,
}

/// Parameters of `scope`: none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Every method of the API. The names are the JSON-RPC method names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Read an issue (or the issue view of a PR).
    ReadIssue,
    /// Read a pull request.
    ReadPr,
    /// Read the comments of an issue or PR, a page at a time.
    ReadComments,
    /// Comment on the assigned issue or one of its PRs.
    PostComment,
    /// Replace the description of the assigned issue or one of its PRs.
    UpdateDescription,
    /// Tell the host the work is finished.
    SignalDone,
    /// What this session may write.
    Scope,
    /// Open the pull request of the configured branch.
    OpenPr,
    /// Read the reviews of a pull request, with their inline comments.
    ReadReviews,
}

impl Method {
    /// All methods, in documentation order.
    pub const ALL: [Method; 9] = [
        Method::ReadIssue,
        Method::ReadPr,
        Method::ReadComments,
        Method::ReadReviews,
        Method::PostComment,
        Method::UpdateDescription,
        Method::OpenPr,
        Method::SignalDone,
        Method::Scope,
    ];

    /// The JSON-RPC method name.
    pub fn name(self) -> &'static str {
        match self {
            Method::ReadIssue => "read_issue",
            Method::ReadPr => "read_pr",
            Method::ReadComments => "read_comments",
            Method::PostComment => "post_comment",
            Method::UpdateDescription => "update_description",
            Method::SignalDone => "signal_done",
            Method::Scope => "scope",
            Method::OpenPr => "open_pr",
            Method::ReadReviews => "read_reviews",
        }
    }

    /// The method with this JSON-RPC name.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// True for methods that write to the forge (write-scoped).
    pub fn writes_forge(self) -> bool {
        matches!(
            self,
            Method::PostComment | Method::UpdateDescription | Method::OpenPr
        )
    }

    /// The parameter names, in positional order.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            Method::ReadIssue | Method::ReadPr => &["number"],
            Method::ReadComments | Method::ReadReviews => &["number", "limit", "cursor", "order"],
            Method::OpenPr => &["title", "body", "base"],
            Method::PostComment => &["number", "body"],
            Method::UpdateDescription => &["number", "body", "mode"],
            Method::SignalDone => &["status", "summary"],
            Method::Scope => &[],
        }
    }

    /// Strictly check `params` (by name or by position) for this method.
    ///
    /// Refuses unknown fields and surplus positions (naming them), missing
    /// fields, wrong types, non-positive numbers and empty text. The message
    /// says what to send instead.
    pub fn check_params(self, params: Option<&RawValue>) -> Result<(), String> {
        let raw = params.map(RawValue::get).unwrap_or("null").trim();
        let raw = if raw == "null" { "[]" } else { raw };
        let names = self.param_names();
        if raw.starts_with('[') {
            let items: Vec<&RawValue> = serde_json::from_str(raw).map_err(|e| {
                format!(
                    "params must be an array or an object: {}",
                    crate::echo::quote_spans(&e.to_string())
                )
            })?;
            if items.len() > names.len() {
                return Err(format!(
                    "{} takes {} positional param(s) ({}), got {}",
                    self.name(),
                    names.len(),
                    names.join(", "),
                    items.len()
                ));
            }
        } else if !raw.starts_with('{') {
            return Err(format!(
                "params must be an object such as {} or an array in the order ({})",
                self.example(),
                names.join(", ")
            ));
        }
        /// Parses the params into the method's params type.
        struct Parse<'a>(&'a str);
        impl MethodTypes for Parse<'_> {
            type Output = serde_json::Result<()>;
            fn visit<P: ParamsType, R: ResultType>(self) -> Self::Output {
                serde_json::from_str::<P>(self.0).map(drop)
            }
        }
        self.with_types(Parse(raw)).map_err(|e| {
            let msg = e.to_string();
            // serde quotes the offending key or value: cut what it repeats.
            let reason = crate::echo::quote_spans(strip_position(&msg));
            format!(
                "invalid params for {}: {reason}; expected {}",
                self.name(),
                self.example()
            )
        })
    }

    /// Calls `visitor` with this method's parameter type (what the params
    /// deserialize into) and result type (what the call returns). The one
    /// place that pairs a method with its types.
    pub fn with_types<V: MethodTypes>(self, visitor: V) -> V::Output {
        match self {
            Method::ReadIssue => visitor.visit::<NumberParams, Issue>(),
            Method::ReadPr => visitor.visit::<NumberParams, PullRequest>(),
            Method::ReadComments => visitor.visit::<PageParams, CommentPage>(),
            Method::ReadReviews => visitor.visit::<PageParams, ReviewPage>(),
            Method::OpenPr => visitor.visit::<OpenPrParams, PullRequest>(),
            Method::PostComment => visitor.visit::<WriteParams, Comment>(),
            Method::UpdateDescription => visitor.visit::<DescriptionParams, Updated>(),
            Method::SignalDone => visitor.visit::<DoneParams, DoneReceipt>(),
            Method::Scope => visitor.visit::<NoParams, ScopeInfo>(),
        }
    }

    /// A valid by-name example of the params, for error messages.
    pub fn example(self) -> &'static str {
        match self {
            Method::ReadIssue | Method::ReadPr | Method::ReadComments | Method::ReadReviews => {
                r#"{"number": 17}"#
            }
            Method::OpenPr => {
                r#"{"title": "Fix the export", "body": "Closes #17", "base": "main"}"#
            }
            Method::PostComment => r#"{"number": 17, "body": "text"}"#,
            Method::UpdateDescription => r#"{"number": 17, "body": "text", "mode": "section"}"#,
            Method::SignalDone => r#"{"status": "success", "summary": "what was done"}"#,
            Method::Scope => "no params",
        }
    }
}

/// What a method's parameter type provides: strict by-name parsing and a schema.
pub trait ParamsType: DeserializeOwned + JsonSchema {}
impl<T: DeserializeOwned + JsonSchema> ParamsType for T {}

/// What a method's result type provides: the wire form both ways and a schema.
pub trait ResultType: Serialize + DeserializeOwned + JsonSchema {}
impl<T: Serialize + DeserializeOwned + JsonSchema> ResultType for T {}

/// Something computed from a method's types, through [`Method::with_types`]
/// (a parser, a schema generator, ...).
pub trait MethodTypes {
    /// What [`MethodTypes::visit`] returns.
    type Output;
    /// Called with the method's parameter type `P` and result type `R`.
    fn visit<P: ParamsType, R: ResultType>(self) -> Self::Output;
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// serde_json appends " at line L column C"; for a one-line request that is noise.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(m: Method, params: &str) -> Result<(), String> {
        let raw = RawValue::from_string(params.to_string()).unwrap();
        m.check_params(Some(&raw))
    }

    #[test]
    fn names_round_trip() {
        for m in Method::ALL {
            assert_eq!(Method::from_name(m.name()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        assert_eq!(Method::from_name("delete_repo"), None);
    }

    #[test]
    fn accepts_named_and_positional() {
        check(Method::PostComment, r#"{"number": 17, "body": "hi"}"#).unwrap();
        check(Method::PostComment, r#"[17, "hi"]"#).unwrap();
        check(Method::Scope, "[]").unwrap();
        check(Method::Scope, "{}").unwrap();
        assert!(Method::Scope.check_params(None).is_ok());
    }

    #[test]
    fn refuses_unknown_field_naming_it() {
        let err = check(Method::ReadIssue, r#"{"number": 1, "owner": "x"}"#).unwrap_err();
        assert!(err.contains("unknown field `owner`"), "{err}");
    }

    #[test]
    fn refuses_surplus_positions() {
        let err = check(Method::ReadIssue, "[1, 2]").unwrap_err();
        assert!(err.contains("takes 1 positional"), "{err}");
    }

    #[test]
    fn refuses_bad_numbers() {
        for bad in ["0", "-3", "1.5", "\"17\"", "18446744073709551616"] {
            let err = check(Method::ReadPr, &format!(r#"{{"number": {bad}}}"#)).unwrap_err();
            assert!(
                err.contains("positive integer") || err.contains("invalid type"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn refuses_missing_and_empty() {
        let err = check(Method::PostComment, r#"{"number": 17}"#).unwrap_err();
        assert!(err.contains("missing field `body`"), "{err}");
        let err = check(Method::PostComment, r#"{"number": 17, "body": "  "}"#).unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let err = check(Method::SignalDone, r#"{"status": "maybe", "summary": "x"}"#).unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
    }

    #[test]
    fn description_mode_is_optional_and_named() {
        check(Method::UpdateDescription, r#"{"number": 17, "body": "b"}"#).unwrap();
        check(Method::UpdateDescription, r#"[17, "b", "append"]"#).unwrap();
        for m in DescriptionMode::ALL {
            let raw = format!(r#"{{"number": 17, "body": "b", "mode": "{m}"}}"#);
            check(Method::UpdateDescription, &raw).unwrap();
            assert_eq!(DescriptionMode::from_name(m.as_str()), Some(m));
        }
        let err = check(
            Method::UpdateDescription,
            r#"{"number": 17, "body": "b", "mode": "prepend"}"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
        let err = check(
            Method::PostComment,
            r#"{"number": 17, "body": "b", "mode": "append"}"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field `mode`"), "{err}");
    }

    #[test]
    fn open_pr_base_is_optional_and_checked() {
        check(Method::OpenPr, r#"{"title": "t", "body": "b"}"#).unwrap();
        check(Method::OpenPr, r#"["t", "b", "release/2.0"]"#).unwrap();
        for bad in ["", "a b", "../x", "x..y", "-x", "x.lock", "a:b", "x/"] {
            let err = check(
                Method::OpenPr,
                &format!(r#"{{"title": "t", "body": "b", "base": "{bad}"}}"#),
            )
            .unwrap_err();
            assert!(err.contains("branch name"), "{bad}: {err}");
        }
        let err = check(
            Method::OpenPr,
            r#"{"title": "t", "body": "b", "head": "x"}"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field `head`"), "{err}");
    }

    #[test]
    fn a_huge_bad_branch_is_cut() {
        let err = check(
            Method::OpenPr,
            &format!(
                r#"{{"title": "t", "body": "b", "base": "a b{}"}}"#,
                "x".repeat(1 << 16)
            ),
        )
        .unwrap_err();
        assert!(err.len() < 400, "{} bytes", err.len());
        assert!(err.contains(crate::echo::CUT_MARK), "{err}");
    }

    #[test]
    fn a_huge_unknown_key_is_named_but_cut() {
        let key = "k".repeat(1 << 20);
        let err = check(Method::Scope, &format!(r#"{{"{key}": 1}}"#)).unwrap_err();
        assert!(err.len() < 400, "{} bytes", err.len());
        assert!(err.contains("unknown field `kkkk"), "{err}");
        assert!(err.contains(crate::echo::CUT_MARK), "{err}");
    }

    #[test]
    fn refuses_scalar_params() {
        let err = check(Method::ReadIssue, "17").unwrap_err();
        assert!(err.contains("object"), "{err}");
    }
}
