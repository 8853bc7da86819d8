//! The contract check: every request the fake receives is compared with
//! Gitea's own Swagger 2.0 document (`tests/gitea/swagger.v1.json`,
//! Gitea 1.25.4, vendored unchanged).
//!
//! This module owns loading the spec, matching a request path to a path
//! template, and checking the method, the typed path and query parameters,
//! the Content-Type and the JSON body (against the operation's body schema,
//! with the `jsonschema` crate in draft 4 mode, which is what Swagger 2.0
//! schemas are closest to). It knows nothing about the fake's data: it only
//! says whether a request is one the real API documents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::{Map, Value, json};

/// Environment variable that overrides where the swagger file is read from
/// (to check the client against another Gitea version's spec).
pub const SWAGGER_ENV: &str = "FORGE_GITEA_SWAGGER";

/// Where the swagger file is: `$FORGE_GITEA_SWAGGER` if set, else the copy
/// vendored in the repository, `tests/gitea/swagger.v1.json`.
pub fn swagger_path() -> Result<PathBuf, String> {
    let (path, from) = match std::env::var_os(SWAGGER_ENV) {
        Some(path) => (PathBuf::from(path), SWAGGER_ENV),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("gitea/swagger.v1.json"),
            "the repository",
        ),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "the Gitea swagger spec is not a readable file at {} (from {from}); \
             restore tests/gitea/swagger.v1.json or set {SWAGGER_ENV}",
            path.display()
        ))
    }
}

/// The outcome of checking one request.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// The path matches a template of the spec and the method is one of its
    /// operations. When false the fake answers 404, as Gitea's router does.
    pub known_route: bool,
    /// Everything wrong with the request, each naming method and path.
    pub violations: Vec<String>,
}

/// The parts of a request the contract looks at.
pub(crate) struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// A loaded swagger document, ready to check requests.
pub(crate) struct Contract {
    base_path: String,
    paths: Map<String, Value>,
    templates: Vec<Template>,
    definitions: Value,
    global_consumes: Vec<String>,
    /// Compiled body validators, keyed by the schema's JSON text.
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// One path template, split into segments.
struct Template {
    raw: String,
    segments: Vec<Segment>,
}

enum Segment {
    /// `issues`
    Literal(String),
    /// `{index}` or `{index}.{diffType}`
    Pattern(Vec<Piece>),
    /// A trailing `{filepath}`: one or more segments (file paths have slashes).
    Rest,
}

enum Piece {
    Literal(String),
    Param,
}

impl Contract {
    /// The process-wide contract, loaded once from [`swagger_path`].
    pub(crate) fn shared() -> Result<Arc<Contract>, String> {
        static CONTRACT: OnceLock<Result<Arc<Contract>, String>> = OnceLock::new();
        CONTRACT
            .get_or_init(|| {
                let path = swagger_path()?;
                Self::load(&path).map(Arc::new)
            })
            .clone()
    }

    /// Reads and indexes a swagger document.
    pub(crate) fn load(path: &Path) -> Result<Contract, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let spec: Value =
            serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
        Self::from_spec(spec).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn from_spec(spec: Value) -> Result<Contract, String> {
        let paths = spec
            .get("paths")
            .and_then(Value::as_object)
            .cloned()
            .ok_or("no `paths` object")?;
        let definitions = spec
            .get("definitions")
            .cloned()
            .ok_or("no `definitions` object")?;
        let base_path = spec
            .get("basePath")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned();
        let global_consumes = string_list(spec.get("consumes"));
        let templates = paths.keys().map(|raw| Template::parse(raw)).collect();
        Ok(Contract {
            base_path,
            paths,
            templates,
            definitions,
            global_consumes,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// Checks one request against the spec.
    pub(crate) fn check(&self, req: &RequestView<'_>) -> Checked {
        let mut checked = Checked::default();
        let here = format!("{} {}", req.method, req.path);
        let mut violate = |what: String| checked.violations.push(format!("{here}: {what}"));

        let Some(api_path) = req
            .path
            .strip_prefix(&self.base_path)
            .filter(|rest| rest.starts_with('/'))
        else {
            violate(format!(
                "path is outside the API base path {}",
                self.base_path
            ));
            return checked;
        };
        let segments: Vec<&str> = api_path[1..].split('/').collect();
        let mut matches: Vec<(&Template, Vec<&str>)> = self
            .templates
            .iter()
            .filter_map(|t| t.matches(&segments).map(|values| (t, values)))
            .collect();
        if matches.is_empty() {
            violate("no path template of the spec matches".to_owned());
            return checked;
        }
        // The most specific template first: a literal segment beats a parameter.
        matches.sort_by(|a, b| a.0.specificity().cmp(&b.0.specificity()).reverse());
        let method = req.method.to_ascii_lowercase();
        let found = matches.iter().find_map(|(t, values)| {
            self.paths
                .get(&t.raw)
                .and_then(|item| item.get(&method))
                .map(|op| (*t, values, op))
        });
        let Some((template, values, operation)) = found else {
            violate(format!(
                "{} has no {} operation in the spec",
                matches[0].0.raw, req.method
            ));
            return checked;
        };
        checked.known_route = true;
        let params: &[Value] = operation
            .get("parameters")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);

        // Path parameters, in template order.
        let names = template.param_names();
        for (name, value) in names.iter().zip(values.iter()) {
            if let Some(param) = find_param(params, "path", name)
                && let Err(why) = check_simple_value(param, &percent_decode(value, false))
            {
                violate(format!("path parameter `{name}` = {value:?}: {why}"));
            }
        }

        // Query parameters the operation declares; unknown ones are ignored,
        // as Gitea ignores them.
        for (key, value) in parse_query(req.query.unwrap_or("")) {
            if let Some(param) = find_param(params, "query", &key)
                && let Err(why) = check_simple_value(param, &value)
            {
                violate(format!("query parameter `{key}` = {value:?}: {why}"));
            }
        }
        for param in params {
            if param.get("in").and_then(Value::as_str) == Some("query")
                && param.get("required").and_then(Value::as_bool) == Some(true)
            {
                let name = param.get("name").and_then(Value::as_str).unwrap_or("");
                if !parse_query(req.query.unwrap_or("")).any(|(k, _)| k == name) {
                    violate(format!("required query parameter `{name}` is missing"));
                }
            }
        }

        // The body.
        let body_param = params
            .iter()
            .find(|p| p.get("in").and_then(Value::as_str) == Some("body"));
        match body_param {
            None if !req.body.is_empty() => {
                violate(format!(
                    "{} takes no request body but {} bytes were sent",
                    operation_name(operation),
                    req.body.len()
                ));
            }
            None => {}
            Some(param) if req.body.is_empty() => {
                let required = param.get("required").and_then(Value::as_bool);
                if required == Some(true) {
                    violate("the request body is required".to_owned());
                }
            }
            Some(param) => {
                let consumes = match operation.get("consumes") {
                    Some(list) => string_list(Some(list)),
                    None => self.global_consumes.clone(),
                };
                let media = req.content_type.map(|ct| {
                    ct.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                });
                match media {
                    Some(m) if consumes.iter().any(|c| c.eq_ignore_ascii_case(&m)) => {}
                    other => violate(format!(
                        "Content-Type {} is not one the operation consumes ({})",
                        other.map_or_else(|| "(none)".to_owned(), |m| format!("{m:?}")),
                        consumes.join(", ")
                    )),
                }
                let schema = param.get("schema").cloned().unwrap_or(Value::Bool(true));
                match serde_json::from_slice::<Value>(req.body) {
                    Err(e) => violate(format!("the request body is not valid JSON: {e}")),
                    Ok(body) => {
                        for why in self.validate(&schema, &body) {
                            violate(format!(
                                "request body does not match {}: {why}",
                                schema_name(&schema)
                            ));
                        }
                    }
                }
            }
        }
        checked
    }

    /// Validates `instance` against `schema`, which may `$ref` the spec's
    /// definitions. Returns one line per error.
    pub(crate) fn validate(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let validator = match self.validator(schema) {
            Ok(v) => v,
            Err(e) => return vec![format!("the spec's schema does not compile: {e}")],
        };
        validator
            .iter_errors(instance)
            .map(|error| {
                let at = error.instance_path().to_string();
                let at = if at.is_empty() {
                    "(root)".to_owned()
                } else {
                    at
                };
                format!("at {at}: {error}")
            })
            .collect()
    }

    fn validator(&self, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let key = schema.to_string();
        let mut cache = self
            .validators
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = cache.get(&key) {
            return Ok(v.clone());
        }
        // `allOf` rather than a sibling `$ref`: draft 4 ignores the siblings
        // of `$ref`, and the definitions must stay resolvable from the root.
        let wrapped = json!({ "definitions": self.definitions, "allOf": [schema] });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            .build(&wrapped)
            .map_err(|e| e.to_string())?;
        let validator = Arc::new(validator);
        cache.insert(key, validator.clone());
        Ok(validator)
    }

    /// Checks a response the fake produces against definition `name`, the
    /// way Gitea really sends it: `null` stands for an absent pointer (the
    /// spec declares nothing nullable), so nulls are dropped before
    /// validating; and every field sent must be declared by the spec, at
    /// every depth, except the ones in `extra` (e.g. `username`, which
    /// Gitea's `User.MarshalJSON` adds).
    #[cfg(test)]
    pub(crate) fn check_response(&self, name: &str, value: &Value, extra: &[&str]) -> Vec<String> {
        let schema = json!({ "$ref": format!("#/definitions/{name}") });
        let mut problems = self.validate(&schema, &strip_nulls(value));
        self.undeclared(&schema, value, "", extra, &mut problems);
        problems
    }

    #[cfg(test)]
    fn undeclared(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        extra: &[&str],
        out: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        match value {
            Value::Object(fields) => {
                let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                    return;
                };
                for (key, field) in fields {
                    match props.get(key) {
                        Some(sub) => {
                            self.undeclared(sub, field, &format!("{at}/{key}"), extra, out)
                        }
                        None if extra.contains(&key.as_str()) => {}
                        None => out.push(format!("{at}/{key} is not declared by the spec")),
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.undeclared(item_schema, item, &format!("{at}/{i}"), extra, out);
                    }
                }
            }
            _ => {}
        }
    }

    #[cfg(test)]
    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix("#/definitions/")
                .and_then(|name| self.definitions.get(name))
                .unwrap_or(schema),
            None => schema,
        }
    }
}

impl Template {
    fn parse(raw: &str) -> Template {
        let parts: Vec<&str> = raw.trim_start_matches('/').split('/').collect();
        let last = parts.len().saturating_sub(1);
        let segments = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                if i == last && *part == "{filepath}" {
                    Segment::Rest
                } else if part.contains('{') {
                    Segment::Pattern(parse_pieces(part))
                } else {
                    Segment::Literal((*part).to_owned())
                }
            })
            .collect();
        Template {
            raw: raw.to_owned(),
            segments,
        }
    }

    /// The values of the parameters, in template order, if the path matches.
    fn matches<'p>(&self, path: &[&'p str]) -> Option<Vec<&'p str>> {
        let mut values = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Rest => {
                    if i >= path.len() || path[i..].iter().any(|s| s.is_empty()) {
                        return None;
                    }
                    // The whole rest of the path is one value; only its first
                    // segment is reported, which is enough for type checks of
                    // a string parameter.
                    values.push(path[i]);
                    return Some(values);
                }
                Segment::Literal(lit) => {
                    if path.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                }
                Segment::Pattern(pieces) => {
                    let seg = path.get(i)?;
                    values.extend(match_pieces(pieces, seg)?);
                }
            }
        }
        (path.len() == self.segments.len()).then_some(values)
    }

    fn param_names(&self) -> Vec<&str> {
        let mut names = Vec::new();
        let mut rest = self.raw.as_str();
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            names.push(&rest[start + 1..start + len]);
            rest = &rest[start + len + 1..];
        }
        names
    }

    /// Ordering key, earliest segment first: a literal segment (3) beats a
    /// parameter with literal text around it (`{index}.{diffType}`: 2),
    /// which beats a bare parameter (1), which beats a trailing `{filepath}`.
    fn specificity(&self) -> Vec<u8> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 3,
                Segment::Pattern(pieces) if pieces.len() > 1 => 2,
                Segment::Pattern(_) => 1,
                Segment::Rest => 0,
            })
            .collect()
    }
}

fn parse_pieces(segment: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = segment;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            pieces.push(Piece::Param);
            rest = inner.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find('{').unwrap_or(rest.len());
            pieces.push(Piece::Literal(rest[..end].to_owned()));
            rest = &rest[end..];
        }
    }
    pieces
}

/// Matches `seg` against literal/parameter pieces; a parameter takes a
/// non-empty run of text up to the next literal's first occurrence.
fn match_pieces<'p>(pieces: &[Piece], seg: &'p str) -> Option<Vec<&'p str>> {
    let mut values = Vec::new();
    let mut rest = seg;
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Literal(lit) => rest = rest.strip_prefix(lit.as_str())?,
            Piece::Param => {
                let end = match pieces.get(i + 1) {
                    Some(Piece::Literal(next)) => rest.find(next.as_str())?,
                    _ => rest.len(),
                };
                if end == 0 {
                    return None;
                }
                values.push(&rest[..end]);
                rest = &rest[end..];
            }
        }
    }
    rest.is_empty().then_some(values)
}

fn find_param<'a>(params: &'a [Value], location: &str, name: &str) -> Option<&'a Value> {
    params.iter().find(|p| {
        p.get("in").and_then(Value::as_str) == Some(location)
            && p.get("name").and_then(Value::as_str) == Some(name)
    })
}

/// Checks a path or query value against a non-body parameter's type,
/// format and enum.
fn check_simple_value(param: &Value, value: &str) -> Result<(), String> {
    let ty = param
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let format = param.get("format").and_then(Value::as_str).unwrap_or("");
    match ty {
        "integer" => {
            value
                .parse::<i64>()
                .map_err(|_| format!("must be an integer ({})", nonempty(format, "int")))?;
        }
        "number" => {
            value
                .parse::<f64>()
                .map_err(|_| "must be a number".to_owned())?;
        }
        "boolean" if value != "true" && value != "false" => {
            return Err("must be `true` or `false`".to_owned());
        }
        "string" if format == "date-time" => {
            chrono::DateTime::parse_from_rfc3339(value)
                .map_err(|e| format!("must be an RFC 3339 date-time ({e})"))?;
        }
        _ => {}
    }
    if let Some(allowed) = param.get("enum").and_then(Value::as_array)
        && !allowed.iter().any(|a| a.as_str() == Some(value))
    {
        return Err(format!("must be one of {}", Value::Array(allowed.clone())));
    }
    Ok(())
}

fn nonempty<'a>(s: &'a str, default: &'a str) -> &'a str {
    if s.is_empty() { default } else { s }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn operation_name(operation: &Value) -> &str {
    operation
        .get("operationId")
        .and_then(Value::as_str)
        .unwrap_or("the operation")
}

fn schema_name(schema: &Value) -> String {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/definitions/"))
        .map_or_else(|| "the body schema".to_owned(), str::to_owned)
}

/// `application/x-www-form-urlencoded` pairs of a query string.
pub(crate) fn parse_query(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k, true), percent_decode(v, true))
    })
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in a
/// query string: an unescaped `+` in `since=…+08:00` becomes a space, which
/// is exactly the client bug the check should catch).
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> Arc<Contract> {
        Contract::shared().expect("the swagger spec loads")
    }

    fn check(method: &str, path: &str, query: Option<&str>, body: &str) -> Checked {
        contract().check(&RequestView {
            method,
            path,
            query,
            content_type: (!body.is_empty()).then_some("application/json"),
            body: body.as_bytes(),
        })
    }

    #[test]
    fn documented_requests_pass() {
        for (method, path, query, body) in [
            ("GET", "/api/v1/user", None, ""),
            ("GET", "/api/v1/repos/acme/widgets", None, ""),
            ("GET", "/api/v1/repos/acme/widgets/issues/17", None, ""),
            (
                "GET",
                "/api/v1/repos/acme/widgets/issues/17/comments",
                None,
                "",
            ),
            (
                "GET",
                "/api/v1/repos/acme/widgets/issues/17/comments",
                Some("since=2024-05-01T12%3A34%3A56%2B08%3A00&page=1"),
                "",
            ),
            (
                "POST",
                "/api/v1/repos/acme/widgets/issues/17/comments",
                None,
                r#"{"body":"hi"}"#,
            ),
            (
                "PATCH",
                "/api/v1/repos/acme/widgets/issues/17",
                None,
                r#"{"body":""}"#,
            ),
            (
                "PATCH",
                "/api/v1/repos/acme/widgets/pulls/18",
                None,
                r#"{"state":"closed"}"#,
            ),
            ("GET", "/api/v1/repos/acme/widgets/pulls/18.diff", None, ""),
            ("GET", "/api/v1/repos/acme/widgets/raw/src/lib.rs", None, ""),
        ] {
            let checked = check(method, path, query, body);
            assert!(checked.known_route, "{method} {path}");
            assert!(checked.violations.is_empty(), "{:?}", checked.violations);
        }
    }

    #[test]
    fn null_field_is_a_violation() {
        let checked = check(
            "PATCH",
            "/api/v1/repos/acme/widgets/issues/17",
            None,
            r#"{"body":null}"#,
        );
        assert!(checked.known_route);
        assert_eq!(checked.violations.len(), 1, "{:?}", checked.violations);
        let v = &checked.violations[0];
        assert!(
            v.starts_with("PATCH /api/v1/repos/acme/widgets/issues/17: "),
            "{v}"
        );
        assert!(v.contains("EditIssueOption") && v.contains("/body"), "{v}");
    }

    #[test]
    fn missing_required_field_and_wrong_type_are_violations() {
        let path = "/api/v1/repos/acme/widgets/issues/17/comments";
        assert!(
            !check("POST", path, None, r#"{"text":"x"}"#)
                .violations
                .is_empty()
        );
        assert!(
            !check("POST", path, None, r#"{"body":5}"#)
                .violations
                .is_empty()
        );
        assert!(!check("POST", path, None, "{not json").violations.is_empty());
        let milestone = r#"{"milestone":"abc"}"#;
        let issue = "/api/v1/repos/acme/widgets/issues/17";
        assert!(!check("PATCH", issue, None, milestone).violations.is_empty());
        let due = r#"{"due_date":"tomorrow"}"#;
        assert!(!check("PATCH", issue, None, due).violations.is_empty());
    }

    #[test]
    fn unknown_path_and_method_are_violations() {
        let unknown = check("GET", "/api/v1/repos/acme/widgets/nonsense", None, "");
        assert!(!unknown.known_route);
        assert!(unknown.violations[0].contains("no path template"));
        let method = check(
            "PUT",
            "/api/v1/repos/acme/widgets/issues/17/comments",
            None,
            "",
        );
        assert!(!method.known_route);
        assert!(method.violations[0].contains("no PUT operation"));
        let outside = check("GET", "/repos/acme/widgets", None, "");
        assert!(outside.violations[0].contains("base path"));
    }

    #[test]
    fn typed_parameters_are_checked() {
        let bad_index = check("GET", "/api/v1/repos/acme/widgets/issues/abc", None, "");
        assert!(bad_index.known_route);
        assert!(
            bad_index.violations[0].contains("`index`"),
            "{:?}",
            bad_index.violations
        );
        // An unescaped `+` in the offset decodes to a space: not RFC 3339.
        let since = check(
            "GET",
            "/api/v1/repos/acme/widgets/issues/17/comments",
            Some("since=2024-05-01T12:34:56+08:00"),
            "",
        );
        assert!(
            since.violations[0].contains("`since`"),
            "{:?}",
            since.violations
        );
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        // `/issues/comments/{id}` must be preferred to `/issues/{index}/...`.
        let checked = check(
            "GET",
            "/api/v1/repos/acme/widgets/issues/comments/5",
            None,
            "",
        );
        assert!(checked.known_route);
        assert!(checked.violations.is_empty(), "{:?}", checked.violations);
    }

    #[test]
    fn body_needs_json_content_type() {
        let checked = contract().check(&RequestView {
            method: "POST",
            path: "/api/v1/repos/acme/widgets/issues/17/comments",
            query: None,
            content_type: Some("text/plain"),
            body: br#"{"body":"x"}"#,
        });
        assert!(
            checked.violations[0].contains("Content-Type"),
            "{:?}",
            checked.violations
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Bb+c%zz", true), "a+b c%zz");
        assert_eq!(percent_decode("a+b%2", false), "a+b%2");
    }
}
