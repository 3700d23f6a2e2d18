//! SQL expressions over a stream's columns, parsed, type-checked and compiled to physical
//! expressions by DataFusion, evaluated batch at a time on Arrow arrays.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

fn session() -> &'static SessionContext {
    static CTX: OnceLock<SessionContext> = OnceLock::new();
    CTX.get_or_init(SessionContext::new)
}

/// A compiled expression and the type it yields.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    pub expr: Arc<dyn PhysicalExpr>,
    pub data_type: DataType,
    pub nullable: bool,
}

/// Compiles `sql` against `schema`. The error text is meant for a user: it names the
/// unknown column or the mismatched types.
pub fn compile(sql: &str, schema: &SchemaRef) -> Result<CompiledExpr, String> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())?;
    let ctx = session();
    let logical = ctx
        .parse_sql_expr(sql, &df_schema)
        .map_err(|e| explain(e.to_string(), schema))?;
    let expr = ctx
        .create_physical_expr(logical, &df_schema)
        .map_err(|e| explain(e.to_string(), schema))?;
    let data_type = expr.data_type(schema).map_err(|e| e.to_string())?;
    let nullable = expr.nullable(schema).map_err(|e| e.to_string())?;
    Ok(CompiledExpr {
        expr,
        data_type,
        nullable,
    })
}

/// Turns DataFusion's messages into the shorter ones a spec author needs.
fn explain(msg: String, schema: &SchemaRef) -> String {
    if let Some(rest) = msg.split("No field named ").nth(1) {
        let name = rest.split(['.', ' ']).next().unwrap_or(rest).trim_matches('"');
        let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return format!("unknown column '{name}' (columns: {})", cols.join(", "));
    }
    msg.lines()
        .next()
        .unwrap_or(&msg)
        .trim_start_matches("Error during planning: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("level", DataType::Utf8, false),
            Field::new("status", DataType::Int32, false),
        ]))
    }

    #[test]
    fn compiles_a_predicate() {
        let c = compile("level <> 'DEBUG' AND status >= 500", &schema()).unwrap();
        assert_eq!(c.data_type, DataType::Boolean);
    }

    #[test]
    fn unknown_column_is_named() {
        let e = compile("levle = 'x'", &schema()).unwrap_err();
        assert!(e.starts_with("unknown column 'levle'"), "{e}");
    }

    #[test]
    fn type_mismatch_is_refused() {
        let e = compile("level - status", &schema()).unwrap_err();
        assert!(!e.is_empty());
    }
}
