//! Turns JSON text into a [`JobSpec`], applying `--set` overrides first and reporting a
//! syntax or shape error with the path of the field that caused it.

use crate::spec::JobSpec;
use crate::spec_error::{SpecError, SpecErrors};
use crate::spec_overrides::apply_override;

/// Parses a spec, applies `a.b.c=value` overrides in order, and deserializes it.
/// Semantic checks are [`crate::validation::validate`]'s job.
pub fn parse_spec(text: &str, overrides: &[String]) -> Result<JobSpec, SpecErrors> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        SpecError::new(
            "$",
            format!("not valid JSON at line {}, column {}: {e}", e.line(), e.column()),
        )
    })?;
    for o in overrides {
        apply_override(&mut value, o)?;
    }
    from_value(value)
}

/// Deserializes an already-parsed JSON value, naming the path of a bad field.
pub fn from_value(value: serde_json::Value) -> Result<JobSpec, SpecErrors> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "$".to_string() } else { path };
        SpecErrors::from(SpecError::new(path, e.into_inner().to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operator_kind_is_named_with_its_path() {
        let text = r#"{"name":"j","sources":[],"operators":[{"id":"a","input":"s","flatmap":"x"}],"sinks":[]}"#;
        let err = parse_spec(text, &[]).unwrap_err();
        assert_eq!(err.0[0].path, "operators[0].flatmap");
        assert!(err.0[0].message.contains("unknown field `flatmap`"), "{err}");
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let text = r#"{"name":"j","parallelism":"two","sources":[],"sinks":[]}"#;
        let err = parse_spec(text, &[]).unwrap_err();
        assert_eq!(err.0[0].path, "parallelism");
    }

    #[test]
    fn syntax_error_gives_line_and_column() {
        let err = parse_spec("{\"name\": ", &[]).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
