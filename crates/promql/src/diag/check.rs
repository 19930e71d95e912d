//! Prometheus' type check (`checkAST`), run on a tree that parsed without errors.

use super::lex::T;
use super::parse::{Card, Node, Parser, Range};
use super::{functions, go_quote};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Scalar,
    Vector,
    Matrix,
    String,
}

/// Prometheus' `DocumentedType`.
fn documented(t: Ty) -> &'static str {
    match t {
        Ty::Scalar => "scalar",
        Ty::Vector => "instant vector",
        Ty::Matrix => "range vector",
        Ty::String => "string",
    }
}

/// Prometheus' `ValueType` string.
fn plain(t: Ty) -> &'static str {
    match t {
        Ty::Scalar => "scalar",
        Ty::Vector => "vector",
        Ty::Matrix => "matrix",
        Ty::String => "string",
    }
}

fn type_of(n: &Node) -> Ty {
    match n {
        Node::Number { .. } | Node::DurationExpr { .. } => Ty::Scalar,
        Node::Str { .. } => Ty::String,
        Node::Vector { .. } | Node::Aggregate { .. } => Ty::Vector,
        Node::Matrix { .. } | Node::Subquery { .. } => Ty::Matrix,
        Node::Call { name, .. } => functions::lookup(name).map_or(Ty::Vector, |f| f.ret),
        Node::Paren { expr, .. } | Node::Unary { expr, .. } => type_of(expr),
        Node::Binary { lhs, rhs, .. } => {
            if type_of(lhs) == Ty::Scalar && type_of(rhs) == Ty::Scalar {
                Ty::Scalar
            } else {
                Ty::Vector
            }
        }
    }
}

/// Go's `%q` of an operator item type.
fn op_name(op: T) -> String {
    go_quote(op.type_str().unwrap_or("?"))
}

/// Whether an (anchored) matcher accepts the empty string.
fn matches_empty(op: T, value: &str) -> bool {
    match op {
        T::Eql => value.is_empty(),
        T::Neq => !value.is_empty(),
        T::EqlRegex | T::NeqRegex => {
            let m = regex::Regex::new(&format!("^(?s:{value})$"))
                .map(|re| re.is_match(""))
                .unwrap_or(false);
            (op == T::EqlRegex) == m
        }
        _ => false,
    }
}

impl Parser<'_> {
    fn expect_type(&mut self, n: &mut Node, want: Ty, ctx: &str) {
        let t = self.check(n);
        if t != want {
            self.err(
                n.range(),
                format!(
                    "expected type {} in {ctx}, got {}",
                    documented(want),
                    documented(t)
                ),
            );
        }
    }

    /// Checks `n` and its children, recording the first error; returns `n`'s type.
    pub(super) fn check(&mut self, n: &mut Node) -> Ty {
        let typ = type_of(n);
        let whole_range = n.range();
        let input_len = self.input_len();
        match n {
            Node::Aggregate {
                op, param, expr, ..
            } => {
                let op = *op;
                self.expect_type(expr, Ty::Vector, "aggregation expression");
                if let Some(p) = param {
                    match op {
                        T::Topk | T::Bottomk | T::Quantile | T::Limitk | T::LimitRatio => {
                            self.expect_type(p, Ty::Scalar, "aggregation parameter")
                        }
                        T::CountValues => self.expect_type(p, Ty::String, "aggregation parameter"),
                        _ => {}
                    }
                }
            }
            Node::Binary {
                op,
                lhs,
                rhs,
                bool_mod,
                card,
                on,
                matching,
                include,
                fill,
            } => {
                let op = *op;
                let lt = self.check(lhs);
                let rt = self.check(rhs);
                let whole: Range = (lhs.range().0, rhs.range().1);
                let op_range = self.op_range(lhs.range().1, rhs.range().0, input_len);
                if *bool_mod && !op.is_comparison() {
                    self.err(
                        op_range,
                        "bool modifier can only be used on comparison operators",
                    );
                }
                if op.is_comparison() && !*bool_mod && rt == Ty::Scalar && lt == Ty::Scalar {
                    self.err(
                        op_range,
                        "comparisons between scalars must use BOOL modifier",
                    );
                }
                let many_to_many = op.is_set_operator() && *card == Card::OneToOne;
                if *on {
                    for l in matching.iter() {
                        if include.contains(l) {
                            self.err(
                                op_range,
                                format!(
                                    "label {} must not occur in ON and GROUP clause at once",
                                    go_quote(l)
                                ),
                            );
                        }
                    }
                }
                let operand_ok = |t: Ty| t == Ty::Scalar || t == Ty::Vector;
                if !operand_ok(lt) {
                    self.err(
                        lhs.range(),
                        "binary expression must contain only scalar and instant vector types",
                    );
                }
                if !operand_ok(rt) {
                    self.err(
                        rhs.range(),
                        "binary expression must contain only scalar and instant vector types",
                    );
                }
                if lt != Ty::Vector || rt != Ty::Vector {
                    if !matching.is_empty() {
                        self.err(
                            whole,
                            "vector matching only allowed between instant vectors",
                        );
                    }
                    if *fill {
                        self.err(
                            whole,
                            "filling in missing series only allowed between instant vectors",
                        );
                    }
                } else if op.is_set_operator() {
                    if matches!(card, Card::OneToMany | Card::ManyToOne) {
                        self.err(
                            whole,
                            format!("no grouping allowed for {} operation", op_name(op)),
                        );
                    }
                    if !many_to_many {
                        self.err(whole, "set operations must always be many-to-many");
                    }
                    if *fill {
                        self.err(
                            whole,
                            "filling in missing series not allowed for set operators",
                        );
                    }
                }
                if (lt == Ty::Scalar || rt == Ty::Scalar) && op.is_set_operator() {
                    self.err(
                        whole,
                        format!(
                            "set operator {} not allowed in binary scalar expression",
                            op_name(op)
                        ),
                    );
                }
            }
            Node::Call { name, args, range } => {
                let range = *range;
                let Some(f) = functions::lookup(name) else {
                    return typ;
                };
                let nargs = f.args.len();
                if f.variadic == 0 {
                    if nargs != args.len() {
                        self.err(
                            range,
                            format!(
                                "expected {nargs} argument(s) in call to {}, got {}",
                                go_quote(f.name),
                                args.len()
                            ),
                        );
                    }
                } else {
                    let na = nargs - 1;
                    if na > args.len() {
                        self.err(
                            range,
                            format!(
                                "expected at least {na} argument(s) in call to {}, got {}",
                                go_quote(f.name),
                                args.len()
                            ),
                        );
                    } else if f.variadic > 0 && na + (f.variadic as usize) < args.len() {
                        self.err(
                            range,
                            format!(
                                "expected at most {} argument(s) in call to {}, got {}",
                                na + f.variadic as usize,
                                go_quote(f.name),
                                args.len()
                            ),
                        );
                    }
                }
                if f.name == "info" && args.len() > 1 {
                    let t1 = type_of(&args[1]);
                    if t1 != Ty::Vector {
                        self.err(
                            range,
                            format!(
                                "expected type instant vector in call to function \"info\", got {}",
                                documented(t1)
                            ),
                        );
                    }
                    let r1 = args[1].range();
                    match &mut args[1] {
                        Node::Vector { name, .. } if !name.is_empty() => self.err(
                            r1,
                            "expected label selectors only, got vector selector instead",
                        ),
                        Node::Vector {
                            bypass_empty_check, ..
                        } => *bypass_empty_check = true,
                        _ => self.err(r1, "expected label selectors only"),
                    }
                }
                for (i, arg) in args.iter_mut().enumerate() {
                    let i = if i >= nargs {
                        if f.variadic == 0 {
                            break;
                        }
                        nargs - 1
                    } else {
                        i
                    };
                    let t = self.check(arg);
                    if t != f.args[i] {
                        self.err(
                            arg.range(),
                            format!(
                                "expected type {} in call to function {}, got {}",
                                documented(f.args[i]),
                                go_quote(f.name),
                                documented(t)
                            ),
                        );
                    }
                }
            }
            Node::Paren { expr, .. } => {
                self.check(expr);
            }
            Node::Unary { expr, .. } => {
                let t = self.check(expr);
                if t != Ty::Scalar && t != Ty::Vector {
                    self.err(
                        whole_range,
                        format!(
                            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                            go_quote(documented(t))
                        ),
                    );
                }
            }
            Node::Subquery { expr, .. } => {
                let t = self.check(expr);
                if t != Ty::Vector {
                    self.err(
                        whole_range,
                        format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            plain(t)
                        ),
                    );
                }
            }
            Node::Matrix { vs, .. } => {
                self.check(vs);
            }
            Node::Vector {
                name,
                matchers,
                range,
                bypass_empty_check,
                ..
            } => {
                if !name.is_empty() {
                    for m in matchers.iter() {
                        if m.name == "__name__" {
                            self.err(
                                *range,
                                format!(
                                    "metric name must not be set twice: {} or {}",
                                    go_quote(name),
                                    go_quote(&m.value)
                                ),
                            );
                        }
                    }
                } else if !*bypass_empty_check
                    && matchers.iter().all(|m| matches_empty(m.op, &m.value))
                {
                    self.err(
                        *range,
                        "vector selector must contain at least one non-empty matcher",
                    );
                }
            }
            Node::Number { .. } | Node::Str { .. } | Node::DurationExpr { .. } => {}
        }
        typ
    }

    /// The operator of a binary expression: from the end of its left operand to the start of
    /// its right one, without surrounding whitespace.
    fn op_range(&self, lhs_end: usize, rhs_start: usize, len: usize) -> Range {
        let b = self.input_bytes();
        let mut s = lhs_end;
        while s < len && matches!(b[s], b' ' | b'\t' | b'\n' | b'\r') {
            s += 1;
        }
        let mut e = rhs_start.saturating_sub(1);
        while e > s && matches!(b[e], b' ' | b'\t' | b'\n' | b'\r') {
            e -= 1;
        }
        (s, e)
    }
}
