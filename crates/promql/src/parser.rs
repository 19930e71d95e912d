//! Parser glue: the `promql-parser` crate does the parsing and type checking; this module maps
//! its errors to ours and offers a few helpers over its AST.

use promql_parser::parser::Expr;

use crate::error::{Error, Result};

/// Parses a PromQL expression.
pub fn parse(query: &str) -> Result<Expr> {
    promql_parser::parser::parse(query).map_err(|e| Error::Parse(format!("parse error: {e}")))
}
