//! The native-histogram trim operators `h </ x` (keep the observations below `x`) and
//! `h >/ x` (keep those above `x`).
//!
//! `promql-parser` does not know them. They bind like the comparison operators, so the query
//! is parsed with each `</` and `>/` masked as `<` and `>`; then the binary expressions of the
//! masked operators, found by their order in the source, are wrapped in a [`TrimExpr`]
//! extension node that the evaluator recognises.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use promql_parser::parser::ast::ExtensionExpr;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, Extension, FunctionArgs, ParenExpr, SubqueryExpr,
    UnaryExpr,
};

use crate::binary::Op;

/// A binary expression whose operator is `</` or `>/` (parsed as `<` or `>`).
pub(crate) struct TrimExpr {
    upper: bool,
    /// Exactly one `Expr::Binary`.
    children: Vec<Expr>,
}

impl TrimExpr {
    /// The operator to evaluate instead of the binary expression's own.
    pub(crate) fn op(&self) -> Op {
        if self.upper {
            Op::TrimUpper
        } else {
            Op::TrimLower
        }
    }

    pub(crate) fn binary(&self) -> Option<&BinaryExpr> {
        match self.children.first() {
            Some(Expr::Binary(b)) => Some(b),
            _ => None,
        }
    }

    fn symbol(&self) -> &'static str {
        if self.upper {
            "</"
        } else {
            ">/"
        }
    }
}

impl fmt::Debug for TrimExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.binary() {
            Some(b) => write!(f, "{} {} {}", b.lhs, self.symbol(), b.rhs),
            None => write!(f, "{}", self.symbol()),
        }
    }
}

impl ExtensionExpr for TrimExpr {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.symbol()
    }

    fn value_type(&self) -> ValueType {
        self.children
            .first()
            .map_or(ValueType::Vector, Expr::value_type)
    }

    fn children(&self) -> &[Expr] {
        &self.children
    }

    fn with_new_children(&self, children: Vec<Expr>) -> Arc<dyn ExtensionExpr> {
        Arc::new(TrimExpr {
            upper: self.upper,
            children,
        })
    }
}

/// Masks the trim operators of `query` as `<` and `>` (same length, so positions hold).
/// Returns the masked query and, for each `<` and `>` operator in source order, whether it
/// was a trim operator; `None` if the query has no trim operator (or does not lex).
pub(crate) fn mask(query: &str) -> Option<(String, Vec<bool>)> {
    // The operators are two adjacent characters: most queries need no lexing at all.
    if !query.contains("</") && !query.contains(">/") {
        return None;
    }
    let ops = crate::diag::angle_operators(query)?;
    if !ops.iter().any(|&(_, trim)| trim) {
        return None;
    }
    let mut bytes = query.as_bytes().to_vec();
    for &(pos, trim) in &ops {
        if trim {
            // The `/` right after `<` or `>`; a space keeps every offset.
            bytes[pos + 1] = b' ';
        }
    }
    let masked = String::from_utf8(bytes).ok()?;
    Some((masked, ops.into_iter().map(|(_, trim)| trim).collect()))
}

/// Wraps the binary expressions of masked trim operators (`marks` as returned by [`mask`]) in
/// [`TrimExpr`] nodes. Errors if the marks and the tree disagree, or for a Prometheus parse
/// error specific to the trim operators.
pub(crate) fn restore(expr: Expr, marks: &[bool]) -> Result<Expr, String> {
    let mut it = marks.iter().copied();
    let out = walk(expr, &mut it)?;
    if it.next().is_some() {
        return Err("the trim operators could not be placed in the parsed expression".into());
    }
    Ok(out)
}

fn walk_box(e: Expr, marks: &mut dyn Iterator<Item = bool>) -> Result<Box<Expr>, String> {
    Ok(Box::new(walk(e, marks)?))
}

/// Rebuilds `e`, visiting its operators in source order.
fn walk(e: Expr, marks: &mut dyn Iterator<Item = bool>) -> Result<Expr, String> {
    Ok(match e {
        Expr::Aggregate(a) => {
            // The parameter comes first in the source: `topk(3, x)`.
            let param = a.param.map(|p| walk_box(*p, marks)).transpose()?;
            let expr = walk_box(*a.expr, marks)?;
            Expr::Aggregate(AggregateExpr {
                op: a.op,
                expr,
                param,
                modifier: a.modifier,
            })
        }
        Expr::Unary(u) => Expr::Unary(UnaryExpr {
            expr: walk_box(*u.expr, marks)?,
        }),
        Expr::Paren(p) => Expr::Paren(ParenExpr {
            expr: walk_box(*p.expr, marks)?,
        }),
        Expr::Subquery(s) => Expr::Subquery(SubqueryExpr {
            expr: walk_box(*s.expr, marks)?,
            ..s
        }),
        Expr::Call(c) => {
            let args = c
                .args
                .args
                .into_iter()
                .map(|a| walk_box(*a, marks))
                .collect::<Result<Vec<_>, _>>()?;
            Expr::Call(Call {
                func: c.func,
                args: FunctionArgs { args },
            })
        }
        Expr::Binary(b) => {
            let lhs = walk_box(*b.lhs, marks)?;
            let op = b.op.to_string();
            let trim = if op == "<" || op == ">" {
                marks.next().ok_or_else(|| {
                    "the trim operators could not be placed in the parsed expression".to_string()
                })?
            } else {
                false
            };
            let rhs = walk_box(*b.rhs, marks)?;
            let bin = BinaryExpr {
                op: b.op,
                lhs,
                rhs,
                modifier: b.modifier,
            };
            if !trim {
                return Ok(Expr::Binary(bin));
            }
            if bin.modifier.as_ref().is_some_and(|m| m.return_bool) {
                return Err("bool modifier can only be used on comparison operators".into());
            }
            Expr::Extension(Extension {
                expr: Arc::new(TrimExpr {
                    upper: op == "<",
                    children: vec![Expr::Binary(bin)],
                }),
            })
        }
        other @ (Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_)) => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operators of `e` in source order, trim operators shown as `</` and `>/`.
    fn ops(e: &Expr, out: &mut Vec<String>) {
        match e {
            Expr::Binary(b) => {
                ops(&b.lhs, out);
                out.push(b.op.to_string());
                ops(&b.rhs, out);
            }
            Expr::Extension(x) => {
                let t = x.expr.as_any().downcast_ref::<TrimExpr>().unwrap();
                let b = t.binary().unwrap();
                ops(&b.lhs, out);
                out.push(t.symbol().to_string());
                ops(&b.rhs, out);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    ops(p, out);
                }
                ops(&a.expr, out);
            }
            Expr::Paren(p) => ops(&p.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| ops(a, out)),
            _ => {}
        }
    }

    fn parsed_ops(q: &str) -> Vec<String> {
        let mut out = Vec::new();
        ops(&crate::parser::parse(q).unwrap(), &mut out);
        out
    }

    #[test]
    fn trim_operators_are_placed_in_source_order() {
        assert_eq!(parsed_ops("a </ 2"), ["</"]);
        assert_eq!(parsed_ops("a < b >/ 3 > c"), ["<", ">/", ">"]);
        assert_eq!(
            parsed_ops(r#"topk(2 < bool 1, x{a="</"} >/ on(a) y) < histogram_count(z </ 1)"#),
            ["<", ">/", "<", "</"]
        );
        assert_eq!(parsed_ops("a <= b >= c"), ["<=", ">="]);
    }

    #[test]
    fn trim_operators_reject_bool() {
        let err = crate::parser::parse("a </ bool 2").unwrap_err().to_string();
        assert!(
            err.contains("bool modifier can only be used on comparison operators"),
            "{err}"
        );
    }

    #[test]
    fn trim_binds_like_comparison() {
        // `+` binds tighter: the trim applies to `a + b`.
        let e = crate::parser::parse("a + b </ 2").unwrap();
        let Expr::Extension(x) = e else {
            panic!("not a trim: {e:?}")
        };
        let t = x.expr.as_any().downcast_ref::<TrimExpr>().unwrap();
        assert!(matches!(&*t.binary().unwrap().lhs, Expr::Binary(_)));
        assert_eq!(t.op(), Op::TrimUpper);
    }
}
