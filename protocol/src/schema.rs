//! JSON Schemas of every method's parameters and result, generated from the
//! types that [`Method::with_types`] pairs with the method.
//!
//! The schemas are for other programs to compile (an MCP client checks tool
//! arguments and results with them), so they use only what every JSON Schema
//! validator understands, in its strictest mode:
//!
//! * each schema is self-contained: subschemas are inlined, no `$ref`,
//!   no `$schema`, no `$defs`; keywords of draft 2020-12 that mean the same
//!   in draft-07;
//! * no `format` keyword: integers are `{"type": "integer", "minimum": N}`
//!   (schemars' `uint64`, `uint32`, ... are not registered formats, and a
//!   strict validator refuses to compile a schema with an unknown format);
//! * the root is described by the caller (a tool has its own title and
//!   description), so the root `title` and `description` are left out.

use schemars::JsonSchema;
use schemars::Schema;
use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use serde_json::{Map, Value};

use crate::params::{Method, MethodTypes, ParamsType, ResultType};

/// A JSON Schema as a JSON object.
pub type SchemaObject = Map<String, Value>;

impl Method {
    /// The schema of this method's by-name parameters: an object that allows
    /// no other properties.
    pub fn params_schema(self) -> SchemaObject {
        struct Of;
        impl MethodTypes for Of {
            type Output = SchemaObject;
            fn visit<P: ParamsType, R: ResultType>(self) -> SchemaObject {
                schema_of::<P>()
            }
        }
        self.with_types(Of)
    }

    /// The schema of this method's result, as the socket API returns it.
    pub fn result_schema(self) -> SchemaObject {
        struct Of;
        impl MethodTypes for Of {
            type Output = SchemaObject;
            fn visit<P: ParamsType, R: ResultType>(self) -> SchemaObject {
                schema_of::<R>()
            }
        }
        self.with_types(Of)
    }
}

/// The portable schema of `T` (see the module header).
pub fn schema_of<T: JsonSchema>() -> SchemaObject {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .with_transform(RecursiveTransform(drop_format))
        .into_generator();
    let Value::Object(mut object) = generator.into_root_schema_for::<T>().to_value() else {
        unreachable!("a root schema is a JSON object");
    };
    for key in ["$schema", "title", "description"] {
        object.remove(key);
    }
    object
}

/// Removes `format`, which validators know only for registered names.
fn drop_format(schema: &mut Schema) {
    schema.remove("format");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Every keyword used anywhere in `schema` (property names excluded).
    fn keywords(schema: &Value, out: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                for (key, value) in map {
                    out.push(key.clone());
                    match key.as_str() {
                        "properties" => {
                            for sub in value.as_object().into_iter().flat_map(|m| m.values()) {
                                keywords(sub, out);
                            }
                        }
                        "enum" | "const" | "required" | "description" | "title" => {}
                        _ => keywords(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| keywords(v, out)),
            _ => {}
        }
    }

    #[test]
    fn schemas_use_only_portable_keywords() {
        for m in Method::ALL {
            for schema in [m.params_schema(), m.result_schema()] {
                let mut used = Vec::new();
                keywords(&Value::Object(schema.clone()), &mut used);
                for k in &used {
                    assert!(
                        !["format", "$ref", "$defs", "$schema", "definitions"]
                            .contains(&k.as_str()),
                        "{m}: `{k}` in {}",
                        Value::Object(schema.clone())
                    );
                }
            }
        }
    }

    #[test]
    fn integers_keep_their_lower_bound() {
        let params = Method::ReadIssue.params_schema();
        assert_eq!(
            params["properties"]["number"],
            json!({
                "type": "integer",
                "minimum": 1,
                "description": "Issue or pull request number (any in the repository)."
            })
        );
        let scope = Method::Scope.result_schema();
        assert_eq!(
            scope["properties"]["writes_left"]["minimum"], 0,
            "{scope:?}"
        );
        assert_eq!(scope["properties"]["writable"]["items"]["minimum"], 0);
    }

    #[test]
    fn params_are_closed_objects_and_results_have_a_type() {
        for m in Method::ALL {
            let params = m.params_schema();
            assert_eq!(params["type"], "object", "{m}");
            assert_eq!(params["additionalProperties"], false, "{m}");
            let result = m.result_schema();
            assert!(result.contains_key("type"), "{m}: {result:?}");
        }
        assert_eq!(Method::ReadComments.result_schema()["type"], "object");
        assert_eq!(Method::UpdateDescription.result_schema()["type"], "object");
    }
}
