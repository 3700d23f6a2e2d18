//! `--set a.b.c=value` overrides (Flink's `-D`): a dotted path into the spec's JSON, where
//! a numeric segment indexes an array (`operators.1.filter=...`). The value is read as JSON
//! when it parses as JSON, else taken as a string, so `--set parallelism=4` is a number
//! and `--set name=nightly` a string.

use serde_json::Value;

use crate::spec_error::SpecError;

pub fn apply_override(root: &mut Value, assignment: &str) -> Result<(), SpecError> {
    let (path, raw) = assignment.split_once('=').ok_or_else(|| {
        SpecError::new(
            "--set",
            format!("'{assignment}' is not of the form path.to.field=value"),
        )
    })?;
    if path.is_empty() {
        return Err(SpecError::new("--set", "empty path"));
    }
    let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.into()));
    let mut node = root;
    let segments: Vec<&str> = path.split('.').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let here = segments[..=i].join(".");
        node = match node {
            Value::Array(items) => {
                let idx: usize = seg
                    .parse()
                    .map_err(|_| SpecError::new(&here, "this is an array: index it with a number"))?;
                let len = items.len();
                items
                    .get_mut(idx)
                    .ok_or_else(|| SpecError::new(&here, format!("index {idx} out of range (length {len})")))?
            }
            Value::Object(map) => {
                if last {
                    map.insert((*seg).to_string(), value);
                    return Ok(());
                }
                map.entry((*seg).to_string())
                    .or_insert_with(|| Value::Object(Default::default()))
            }
            _ => {
                return Err(SpecError::new(
                    &here,
                    "cannot set a field inside a value that is not an object or array",
                ));
            }
        };
        if last {
            *node = value;
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_nested_fields_and_array_items() {
        let mut v = json!({"parallelism": 1, "sources": [{"generator": {"events": 10}}]});
        apply_override(&mut v, "parallelism=4").unwrap();
        apply_override(&mut v, "sources.0.generator.events=1000").unwrap();
        apply_override(&mut v, "name=nightly run").unwrap();
        assert_eq!(
            v,
            json!({"parallelism": 4, "name": "nightly run", "sources": [{"generator": {"events": 1000}}]})
        );
    }

    #[test]
    fn bad_index_names_the_path() {
        let mut v = json!({"sources": []});
        let e = apply_override(&mut v, "sources.3.id=x").unwrap_err();
        assert_eq!(e.path, "sources.3");
    }
}
