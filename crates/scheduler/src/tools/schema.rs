//! Tool arguments checked against the tool's JSON Schema before the tool runs; what is
//! wrong goes back to the model, which can correct itself.
//!
//! Node tools bring their own schemas, so a schema is untrusted input: `jsonschema` is
//! built without its default features (no `$ref` is ever fetched over HTTP or read from
//! the gateway's disk; a remote `$ref` fails to compile), and patterns use the
//! linear-time `regex` engine, so a hostile `pattern` cannot make validation take
//! exponential time. A schema that does not compile makes the tool unusable, said to the
//! model the same way.

use serde_json::Value;

/// Problems reported to the model, at most.
const MAX_PROBLEMS: usize = 5;

/// A compiled schema of one tool's arguments.
pub struct ArgsSchema {
    validator: Result<jsonschema::Validator, String>,
}

impl std::fmt::Debug for ArgsSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgsSchema")
            .field("compiled", &self.validator.is_ok())
            .finish()
    }
}

impl ArgsSchema {
    pub fn compile(schema: &Value) -> ArgsSchema {
        let validator = jsonschema::options()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(schema)
            .map_err(|e| format!("the tool's argument schema is invalid: {e}"));
        ArgsSchema { validator }
    }

    /// `Ok` when `args` fit; otherwise what is wrong, one `path: problem` per line.
    pub fn check(&self, args: &Value) -> Result<(), String> {
        let validator = self.validator.as_ref().map_err(Clone::clone)?;
        let problems: Vec<String> = validator
            .iter_errors(args)
            .take(MAX_PROBLEMS)
            .map(|e| {
                let path = e.instance_path().to_string();
                let path = if path.is_empty() {
                    "/".to_owned()
                } else {
                    path
                };
                format!("{path}: {e}")
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_checked_and_problems_named() {
        let s = ArgsSchema::compile(&json!({
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 7}},
            "required": ["city"],
            "additionalProperties": false
        }));
        assert!(s.check(&json!({"city": "Oslo", "days": 3})).is_ok());
        let e = s.check(&json!({"days": 9, "extra": 1})).unwrap_err();
        assert!(e.contains("city"), "{e}");
        assert!(e.contains("/days"), "{e}");
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn a_remote_ref_is_never_fetched_and_a_bad_schema_is_said() {
        let s = ArgsSchema::compile(&json!({"$ref": "http://169.254.169.254/schema.json"}));
        assert!(s.check(&json!({})).is_err());
        let s = ArgsSchema::compile(&json!({"type": 5}));
        let e = s.check(&json!({})).unwrap_err();
        assert!(e.contains("invalid"), "{e}");
    }

    #[test]
    fn a_hostile_pattern_runs_in_linear_time() {
        // Exponential with a backtracking engine; instant with `regex`.
        let s = ArgsSchema::compile(&json!({"type": "string", "pattern": "^(a+)+$"}));
        let text = format!("{}!", "a".repeat(5_000));
        assert!(s.check(&json!(text)).is_err());
    }
}
