//! A recursive-descent recogniser for PromQL that follows Prometheus' yacc grammar closely
//! enough to fail at the same token, with the same message, as Prometheus' generated parser
//! (including the context its error productions add: "in label matching", "in grouping opts",
//! "in aggregation", ...), and to raise the semantic errors its grammar actions raise, in the
//! same order. It builds a light tree with Prometheus' position ranges for the type checker.

use std::collections::VecDeque;

use super::lex::{Item, Lexer, T};
use super::{go_float, go_quote, Diag, Options, Pos};

/// A position range `[start, end)` in bytes.
pub(super) type Range = (Pos, Pos);

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Matcher {
    pub name: String,
    pub op: T,
    pub value: String,
}

/// Modifier state shared by vector selectors and subqueries.
#[derive(Debug, Clone, Default)]
pub(super) struct Mods {
    /// `offset` with a non-zero literal, or with a duration expression.
    pub offset: bool,
    /// `@ <timestamp>` or `@ start()` / `@ end()`.
    pub at: bool,
    pub anchored: bool,
    pub smoothed: bool,
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Number {
        val: f64,
        range: Range,
    },
    Str {
        range: Range,
    },
    Vector {
        name: String,
        matchers: Vec<Matcher>,
        range: Range,
        mods: Mods,
        bypass_empty_check: bool,
    },
    Matrix {
        vs: Box<Node>,
        end: Pos,
    },
    Subquery {
        expr: Box<Node>,
        end: Pos,
        mods: Mods,
    },
    Call {
        name: String,
        args: Vec<Node>,
        range: Range,
    },
    Aggregate {
        op: T,
        param: Option<Box<Node>>,
        expr: Box<Node>,
        range: Range,
    },
    Binary {
        op: T,
        lhs: Box<Node>,
        rhs: Box<Node>,
        bool_mod: bool,
        card: Card,
        on: bool,
        matching: Vec<String>,
        include: Vec<String>,
        fill: bool,
    },
    Paren {
        expr: Box<Node>,
        range: Range,
    },
    Unary {
        expr: Box<Node>,
        start: Pos,
    },
    /// A duration expression (only inside `[...]` and after `offset`).
    DurationExpr {
        range: Range,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

impl Node {
    pub(super) fn range(&self) -> Range {
        match self {
            Node::Number { range, .. }
            | Node::Str { range }
            | Node::Vector { range, .. }
            | Node::Call { range, .. }
            | Node::Aggregate { range, .. }
            | Node::Paren { range, .. }
            | Node::DurationExpr { range } => *range,
            Node::Matrix { vs, end } => (vs.range().0, *end),
            Node::Subquery { expr, end, .. } => (expr.range().0, *end),
            Node::Binary { lhs, rhs, .. } => (lhs.range().0, rhs.range().1),
            Node::Unary { expr, start, .. } => (*start, expr.range().1),
        }
    }
}

/// A syntax error (already recorded) stops the parse.
pub(super) struct Abort;

type PResult<T> = Result<T, Abort>;

/// Enclosing grammar states that have an error production: a syntax error inside them that no
/// nearer error production handles is reported in their words.
#[derive(Clone, Copy)]
enum Frame {
    Aggregation,
    Offset,
    At,
    RangeStart,
    RangeEnd,
    StepStart,
    StepEnd,
}

impl Frame {
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Frame::Aggregation => ("aggregation", ""),
            Frame::Offset => ("offset", "number, duration, step(), or range()"),
            Frame::At => ("@", "timestamp"),
            Frame::RangeStart => (
                "subquery or range selector",
                "number, duration, step(), or range()",
            ),
            Frame::RangeEnd => ("subquery or range", "\":\" or \"]\""),
            Frame::StepStart => (
                "subquery selector",
                "number, duration, step(), range(), or \"]\"",
            ),
            Frame::StepEnd => ("subquery selector", "\"]\""),
        }
    }
}

const GROUPING: &str = "grouping opts";
const MATCHING: &str = "label matching";

fn binary_prec(t: T) -> Option<u8> {
    Some(match t {
        T::Lor => 1,
        T::Land | T::Lunless => 2,
        T::Eqlc | T::Gte | T::Gtr | T::Lss | T::Lte | T::Neq | T::TrimUpper | T::TrimLower => 3,
        T::Add | T::Sub => 4,
        T::Mul | T::Div | T::Mod | T::Atan2 => 5,
        T::Pow => 6,
        _ => return None,
    })
}

/// Prometheus' `metric_identifier` tokens.
fn is_metric_identifier(t: T) -> bool {
    matches!(
        t,
        T::Identifier
            | T::MetricIdentifier
            | T::By
            | T::Without
            | T::Fill
            | T::FillLeft
            | T::FillRight
            | T::Land
            | T::Lor
            | T::Lunless
            | T::Offset
            | T::Start
            | T::End
            | T::Step
            | T::Range
            | T::Anchored
            | T::Smoothed
            | T::MaxOf
            | T::MinOf
    ) || t.is_aggregator()
}

/// Prometheus' `maybe_label` tokens (label names in grouping clauses).
fn is_maybe_label(t: T) -> bool {
    (is_metric_identifier(t) && t != T::Without)
        || matches!(
            t,
            T::Bool | T::GroupLeft | T::GroupRight | T::Ignoring | T::On | T::Atan2
        )
}

fn can_start_expr(t: T) -> bool {
    is_metric_identifier(t)
        || matches!(
            t,
            T::Number | T::Duration | T::String | T::LeftParen | T::LeftBrace | T::Add | T::Sub
        )
}

fn is_match_op(t: T) -> bool {
    matches!(t, T::Eql | T::Neq | T::EqlRegex | T::NeqRegex)
}

/// Go's `strconv.Unquote` for a lexed (so well-formed) string item.
pub(super) fn unquote(s: &str) -> String {
    let q = s.chars().next().unwrap_or('"');
    let body = &s[q.len_utf8()..s.len().saturating_sub(1).max(q.len_utf8())];
    if q == '`' {
        return body.to_string();
    }
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else { break };
        let hex = |n: usize, chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut v = 0u32;
            for _ in 0..n {
                v = v * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0);
            }
            v
        };
        match e {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            'x' => {
                let v = hex(2, &mut chars);
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            'u' => {
                let v = hex(4, &mut chars);
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            'U' => {
                let v = hex(8, &mut chars);
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    v = v * 8 + chars.next().and_then(|c| c.to_digit(8)).unwrap_or(0);
                }
                out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            }
            other => out.push(other),
        }
    }
    out
}

/// `model.ParseDuration` from prometheus/common: the duration in seconds, or its error in
/// Prometheus' words.
fn parse_duration(s: &str) -> Result<f64, String> {
    use model::duration::DurationError;
    model::duration::parse(s)
        .map(|d| d.as_secs_f64())
        .map_err(|e| match e {
            DurationError::Empty => "empty duration string".to_string(),
            DurationError::Invalid(_) => format!("not a valid duration string: {}", go_quote(s)),
            DurationError::UnknownUnit { unit, .. } => format!(
                "unknown unit {} in duration {}",
                go_quote(&unit),
                go_quote(s)
            ),
            DurationError::OutOfRange => "duration out of range".to_string(),
        })
}

fn duration_out_of_range(v: f64) -> bool {
    // Seconds that still fit an int64 count of nanoseconds.
    let limit = 9_223_372_036_854_775_808.0 / 1e9;
    v.abs() > limit
}

pub(super) struct Parser<'a> {
    input: &'a str,
    lex: Lexer<'a>,
    buf: VecDeque<Item>,
    last_closing: Pos,
    last_pos: Pos,
    frames: Vec<Frame>,
    opts: Options,
    pub(super) first: Option<Diag>,
    /// Current nesting of sub-expressions, and operands read so far.
    depth: usize,
    operands: usize,
}

/// Nesting (parentheses, unary operators, `^` chains, calls) the diagnosis follows.
const MAX_DEPTH: usize = 100;
/// Operands the diagnosis follows (the tree's height is at most this).
const MAX_OPERANDS: usize = 300;

impl<'a> Parser<'a> {
    pub(super) fn new(input: &'a str, opts: Options) -> Self {
        Parser {
            input,
            lex: Lexer::new(input),
            buf: VecDeque::new(),
            last_closing: 0,
            last_pos: 0,
            frames: Vec::new(),
            opts,
            first: None,
            depth: 0,
            operands: 0,
        }
    }

    pub(super) fn input_len(&self) -> usize {
        self.input.len()
    }

    pub(super) fn input_bytes(&self) -> &[u8] {
        self.input.as_bytes()
    }

    /// Records an error unless an earlier one was recorded (only the first is reported).
    pub(super) fn err(&mut self, range: Range, msg: impl Into<String>) {
        if self.first.is_none() {
            self.first = Some(Diag {
                start: range.0,
                msg: msg.into(),
            });
        }
    }

    /// Lexes one more item into the lookahead buffer, as Prometheus' `parser.Lex` does:
    /// comments are skipped, closing items move `lastClosing`, lexer errors are recorded.
    fn fill(&mut self) {
        loop {
            let it = self.lex.next_item();
            self.last_pos = it.pos;
            match it.typ {
                T::Comment => continue,
                T::Error => {
                    let start = self.lex.start();
                    self.err((start, self.input.len()), it.val.clone());
                }
                T::RightBrace | T::RightParen | T::RightBracket | T::Duration | T::Number => {
                    self.last_closing = it.end();
                }
                _ => {}
            }
            self.buf.push_back(it);
            return;
        }
    }

    fn peek_n(&mut self, n: usize) -> &Item {
        while self.buf.len() <= n {
            if self.buf.back().is_some_and(|i| i.typ == T::Error) {
                let last = self.buf.back().cloned().expect("non-empty");
                self.buf.push_back(last);
                continue;
            }
            self.fill();
        }
        &self.buf[n]
    }

    fn peek(&mut self) -> T {
        self.peek_n(0).typ
    }

    fn next(&mut self) -> Item {
        self.peek_n(0);
        self.buf.pop_front().expect("peeked")
    }

    /// A syntax error at `tok`: reported with the context of the nearest error production
    /// (`local`, or the innermost enclosing frame).
    fn unexpected(&mut self, tok: &Item, local: Option<(&str, &str)>) -> Abort {
        if tok.typ != T::Error {
            let (ctx, expected) = local
                .or_else(|| self.frames.last().map(|f| f.words()))
                .unwrap_or(("", ""));
            let mut msg = format!("unexpected {}", tok.desc());
            if !ctx.is_empty() {
                msg.push_str(" in ");
                msg.push_str(ctx);
            }
            if !expected.is_empty() {
                msg.push_str(", expected ");
                msg.push_str(expected);
            }
            self.err((tok.pos, tok.end()), msg);
        }
        Abort
    }

    fn fail_next(&mut self, local: Option<(&str, &str)>) -> Abort {
        let tok = self.next();
        self.unexpected(&tok, local)
    }

    fn framed<R>(&mut self, f: Frame, body: impl FnOnce(&mut Self) -> PResult<R>) -> PResult<R> {
        self.frames.push(f);
        let r = body(self);
        self.frames.pop();
        r
    }

    /// The whole query.
    pub(super) fn parse_query(&mut self) -> PResult<Node> {
        if self.peek() == T::Eof {
            self.err((0, 0), "no expression found in input");
            return Err(Abort);
        }
        let e = self.expr(0)?;
        if self.peek() != T::Eof {
            return Err(self.fail_next(None));
        }
        Ok(e)
    }

    fn expr(&mut self, min_prec: u8) -> PResult<Node> {
        self.depth += 1;
        let r = self.expr_inner(min_prec);
        self.depth -= 1;
        r
    }

    /// Gives up (without an error of its own) past the nesting and size limits, which keep the
    /// recursion here and in the type check within any thread's stack. Prometheus' parser has
    /// no such limits; Cairn then reports `promql-parser`'s error.
    fn budget(&mut self) -> PResult<()> {
        self.operands += 1;
        if self.depth > MAX_DEPTH || self.operands > MAX_OPERANDS {
            return Err(Abort);
        }
        Ok(())
    }

    fn expr_inner(&mut self, min_prec: u8) -> PResult<Node> {
        let mut lhs = self.unary()?;
        loop {
            let op = self.peek();
            let Some(prec) = binary_prec(op) else {
                return Ok(lhs);
            };
            if prec < min_prec {
                return Ok(lhs);
            }
            self.next();
            let m = self.bin_modifier()?;
            let rhs = self.expr(if op == T::Pow { prec } else { prec + 1 })?;
            lhs = Node::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                bool_mod: m.bool_mod,
                card: m.card,
                on: m.on,
                matching: m.matching,
                include: m.include,
                fill: m.fill,
            };
        }
    }

    fn unary(&mut self) -> PResult<Node> {
        self.budget()?;
        if matches!(self.peek(), T::Add | T::Sub) {
            let op = self.next();
            // `unary_op expr %prec MUL`: only `^` binds tighter.
            let e = self.expr(6)?;
            return Ok(match e {
                Node::Number { val, range } => Node::Number {
                    val: if op.typ == T::Sub { -val } else { val },
                    range: (op.pos, range.1),
                },
                e => Node::Unary {
                    expr: Box::new(e),
                    start: op.pos,
                },
            });
        }
        let mut e = self.primary()?;
        loop {
            e = match self.peek() {
                T::Offset => self.offset(e)?,
                T::At => self.at(e)?,
                T::LeftBracket => self.range_or_subquery(e)?,
                T::Anchored | T::Smoothed => {
                    let kw = self.next();
                    self.set_extended(&mut e, kw.typ);
                    e
                }
                _ => return Ok(e),
            };
        }
    }

    fn primary(&mut self) -> PResult<Node> {
        let t = self.peek();
        let t2 = if is_metric_identifier(t) {
            self.peek_n(1).typ
        } else {
            T::Eof
        };
        match t {
            T::Number | T::Duration => {
                let tok = self.next();
                Ok(self.number_literal(&tok))
            }
            T::String => {
                let tok = self.next();
                Ok(Node::Str {
                    range: (tok.pos, tok.end()),
                })
            }
            T::LeftParen => {
                let l = self.next();
                let e = self.expr(0)?;
                if self.peek() != T::RightParen {
                    return Err(self.fail_next(None));
                }
                let r = self.next();
                Ok(Node::Paren {
                    expr: Box::new(e),
                    range: (l.pos, r.end()),
                })
            }
            T::LeftBrace => self.vector_selector(None),
            _ if t.is_aggregator() && matches!(t2, T::LeftParen | T::By | T::Without) => {
                self.aggregate()
            }
            T::Identifier | T::Start | T::End | T::Step | T::Range | T::MaxOf | T::MinOf
                if t2 == T::LeftParen =>
            {
                let name = self.next();
                let args = self.call_body()?;
                if super::functions::lookup(&name.val).is_none() {
                    self.err(
                        (name.pos, name.end()),
                        format!("unknown function with name {}", go_quote(&name.val)),
                    );
                }
                Ok(Node::Call {
                    name: name.val,
                    args,
                    range: (name.pos, self.last_closing),
                })
            }
            _ if is_metric_identifier(t) => {
                let name = self.next();
                self.vector_selector(Some(name))
            }
            _ => Err(self.fail_next(None)),
        }
    }

    fn number_literal(&mut self, tok: &Item) -> Node {
        let val = self.number_value(tok);
        Node::Number {
            val,
            range: (tok.pos, tok.end()),
        }
    }

    /// The value of a NUMBER or DURATION item (recording Prometheus' error if it has none).
    fn number_value(&mut self, tok: &Item) -> f64 {
        let r = if tok.typ == T::Duration {
            parse_duration(&tok.val)
        } else {
            go_float(&tok.val).map_err(|e| format!("error parsing number: {e}"))
        };
        match r {
            Ok(v) => v,
            Err(e) => {
                self.err((tok.pos, tok.end()), e);
                0.0
            }
        }
    }

    /// `( args )` of a function call or aggregation.
    fn call_body(&mut self) -> PResult<Vec<Node>> {
        self.next(); // "("
        let mut args = Vec::new();
        if self.peek() == T::RightParen {
            self.next();
            return Ok(args);
        }
        args.push(self.expr(0)?);
        loop {
            match self.peek() {
                T::RightParen => {
                    self.next();
                    return Ok(args);
                }
                T::Comma => {
                    let comma = self.next();
                    if can_start_expr(self.peek()) {
                        args.push(self.expr(0)?);
                    } else {
                        self.err(
                            (comma.pos, comma.end()),
                            "trailing commas not allowed in function call args",
                        );
                    }
                }
                _ => return Err(self.fail_next(None)),
            }
        }
    }

    fn aggregate(&mut self) -> PResult<Node> {
        let op = self.next();
        self.framed(Frame::Aggregation, |p| {
            let mut overread = false;
            let grouping_first = matches!(p.peek(), T::By | T::Without);
            if grouping_first {
                p.next();
                p.grouping_labels()?;
                if p.peek() != T::LeftParen {
                    return Err(p.fail_next(None));
                }
            }
            let args = p.call_body()?;
            if !grouping_first {
                if matches!(p.peek(), T::By | T::Without) {
                    p.next();
                    p.grouping_labels()?;
                } else {
                    overread = true;
                }
            }
            let mut end = p.last_closing;
            if overread {
                end = p.find_prev_right_paren(end);
            }
            Ok(p.new_aggregate(op.typ, (op.pos, end), args))
        })
    }

    fn find_prev_right_paren(&self, fallback: Pos) -> Pos {
        let b = self.input.as_bytes();
        let lp = self.last_pos;
        if fallback == 0 || fallback > b.len() || lp == 0 || lp >= b.len() || b[lp] != b')' {
            return fallback;
        }
        for i in (1..lp).rev() {
            match b[i] {
                b')' => return i + 1,
                b' ' | b'\t' | b'\n' | b'\r' => {}
                _ => return fallback,
            }
        }
        fallback
    }

    fn new_aggregate(&mut self, op: T, range: Range, mut args: Vec<Node>) -> Node {
        let placeholder = |range| Node::Aggregate {
            op,
            param: None,
            expr: Box::new(Node::Str { range }),
            range,
        };
        if args.is_empty() {
            self.err(range, "no arguments for aggregate expression provided");
            return placeholder(range);
        }
        let with_param = matches!(
            op,
            T::Topk | T::Bottomk | T::CountValues | T::Quantile | T::Limitk | T::LimitRatio
        );
        let want = if with_param { 2 } else { 1 };
        if args.len() != want {
            self.err(
                range,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {want}, got {}",
                    args.len()
                ),
            );
            return placeholder(range);
        }
        let expr = args.pop().expect("checked");
        Node::Aggregate {
            op,
            param: args.pop().map(Box::new),
            expr: Box::new(expr),
            range,
        }
    }

    /// `( label, ... )` after by/without/on/ignoring/group_x.
    fn grouping_labels(&mut self) -> PResult<Vec<String>> {
        if self.peek() != T::LeftParen {
            return Err(self.fail_next(Some((GROUPING, "\"(\""))));
        }
        self.next();
        let mut labels = Vec::new();
        if self.peek() == T::RightParen {
            self.next();
            return Ok(labels);
        }
        loop {
            let tok = self.next();
            if tok.typ == T::String {
                let name = unquote(&tok.val);
                if name.is_empty() {
                    self.err(
                        (tok.pos, tok.end()),
                        format!("invalid label name for grouping: {}", go_quote(&name)),
                    );
                }
                labels.push(name);
            } else if is_maybe_label(tok.typ) {
                labels.push(tok.val);
            } else {
                return Err(self.unexpected(&tok, Some((GROUPING, "label"))));
            }
            match self.peek() {
                T::RightParen => {
                    self.next();
                    return Ok(labels);
                }
                T::Comma => {
                    self.next();
                    if self.peek() == T::RightParen {
                        self.next();
                        return Ok(labels);
                    }
                }
                _ => return Err(self.fail_next(Some((GROUPING, "\",\" or \")\"")))),
            }
        }
    }

    fn bin_modifier(&mut self) -> PResult<BinMod> {
        let mut m = BinMod {
            bool_mod: false,
            card: Card::OneToOne,
            on: false,
            matching: Vec::new(),
            include: Vec::new(),
            fill: false,
        };
        if self.peek() == T::Bool {
            self.next();
            m.bool_mod = true;
        }
        if matches!(self.peek(), T::On | T::Ignoring) {
            m.on = self.next().typ == T::On;
            m.matching = self.grouping_labels()?;
            if matches!(self.peek(), T::GroupLeft | T::GroupRight) {
                let g = self.next();
                m.card = if g.typ == T::GroupLeft {
                    Card::ManyToOne
                } else {
                    Card::OneToMany
                };
                // `maybe_grouping_labels`: empty only before what may follow it.
                let t = self.peek();
                if t == T::LeftParen {
                    m.include = self.grouping_labels()?;
                } else if !can_start_expr(t) && !matches!(t, T::Fill | T::FillLeft | T::FillRight) {
                    return Err(self.fail_next(Some((GROUPING, "\"(\""))));
                }
            }
        }
        match self.peek() {
            T::Fill => {
                self.next();
                self.fill_value()?;
                m.fill = true;
            }
            T::FillLeft | T::FillRight => {
                let first = self.next().typ;
                self.fill_value()?;
                m.fill = true;
                let other = if first == T::FillLeft {
                    T::FillRight
                } else {
                    T::FillLeft
                };
                if self.peek() == other {
                    self.next();
                    self.fill_value()?;
                }
            }
            _ => {}
        }
        Ok(m)
    }

    fn fill_value(&mut self) -> PResult<()> {
        if self.peek() != T::LeftParen {
            return Err(self.fail_next(None));
        }
        self.next();
        if matches!(self.peek(), T::Add | T::Sub) {
            self.next();
        }
        if !matches!(self.peek(), T::Number | T::Duration) {
            return Err(self.fail_next(None));
        }
        let tok = self.next();
        self.number_value(&tok);
        if self.peek() != T::RightParen {
            return Err(self.fail_next(None));
        }
        self.next();
        Ok(())
    }

    fn vector_selector(&mut self, name: Option<Item>) -> PResult<Node> {
        let (mut matchers, mut range) = (Vec::new(), (0, 0));
        if self.peek() == T::LeftBrace || name.is_none() {
            (matchers, range) = self.label_matchers()?;
        }
        let name_val = match name {
            Some(n) => {
                range = if range == (0, 0) {
                    (n.pos, n.end())
                } else {
                    (n.pos, range.1)
                };
                n.val
            }
            None => String::new(),
        };
        Ok(Node::Vector {
            name: name_val,
            matchers,
            range,
            mods: Mods::default(),
            bypass_empty_check: false,
        })
    }

    fn label_matchers(&mut self) -> PResult<(Vec<Matcher>, Range)> {
        let lb = self.next();
        let mut out = Vec::new();
        if self.peek() == T::RightBrace {
            let rb = self.next();
            return Ok((out, (lb.pos, rb.end())));
        }
        loop {
            let tok = self.next();
            match tok.typ {
                T::Identifier | T::String => {
                    let name = if tok.typ == T::String {
                        unquote(&tok.val)
                    } else {
                        tok.val.clone()
                    };
                    if is_match_op(self.peek()) {
                        let op = self.next();
                        if self.peek() != T::String {
                            return Err(self.fail_next(Some((MATCHING, "string"))));
                        }
                        let v = self.next();
                        let value = unquote(&v.val);
                        if matches!(op.typ, T::EqlRegex | T::NeqRegex) {
                            if let Err(e) = super::check_regex(&value) {
                                self.err((tok.pos, v.end()), e);
                            }
                        }
                        out.push(Matcher {
                            name,
                            op: op.typ,
                            value,
                        });
                    } else if tok.typ == T::String {
                        out.push(Matcher {
                            name: "__name__".into(),
                            op: T::Eql,
                            value: name,
                        });
                    } else {
                        return Err(self.fail_next(Some((MATCHING, "label matching operator"))));
                    }
                }
                _ => {
                    return Err(self.unexpected(&tok, Some((MATCHING, "identifier or \"}\""))));
                }
            }
            match self.peek() {
                T::RightBrace => {
                    let rb = self.next();
                    return Ok((out, (lb.pos, rb.end())));
                }
                T::Comma => {
                    self.next();
                    if self.peek() == T::RightBrace {
                        let rb = self.next();
                        return Ok((out, (lb.pos, rb.end())));
                    }
                }
                _ => return Err(self.fail_next(Some((MATCHING, "\",\" or \"}\"")))),
            }
        }
    }

    // --- Modifiers -------------------------------------------------------------------------

    fn offset(&mut self, mut e: Node) -> PResult<Node> {
        self.next();
        let d = self.framed(Frame::Offset, |p| p.offset_duration())?;
        let is_expr = !matches!(d, Node::Number { .. });
        let nonzero = matches!(d, Node::Number { val, .. } if (val * 1e9).round() != 0.0);
        let range = e.range();
        let last_closing = self.last_closing;
        let (mods, end): (&mut Mods, &mut Pos) = match &mut e {
            Node::Vector { mods, range, .. } => (mods, &mut range.1),
            Node::Matrix { vs, end } => match vs.as_mut() {
                Node::Vector { mods, .. } => (mods, end),
                _ => {
                    self.err(range, "ranges only allowed for vector selectors");
                    return Ok(e);
                }
            },
            Node::Subquery { mods, end, .. } => (mods, end),
            _ => {
                self.err(range, "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery");
                return Ok(e);
            }
        };
        if mods.offset {
            if self.first.is_none() {
                self.first = Some(Diag {
                    start: range.0,
                    msg: "offset may not be set multiple times".into(),
                });
            }
        } else if nonzero || is_expr {
            mods.offset = true;
        }
        *end = last_closing;
        Ok(e)
    }

    fn at(&mut self, mut e: Node) -> PResult<Node> {
        self.next();
        let ts = self.framed(Frame::At, |p| {
            let t = p.peek();
            if matches!(t, T::Start | T::End) {
                p.next();
                if p.peek() != T::LeftParen {
                    return Err(p.fail_next(None));
                }
                p.next();
                if p.peek() != T::RightParen {
                    return Err(p.fail_next(None));
                }
                p.next();
                return Ok(None);
            }
            let mut sign = 1.0;
            if matches!(t, T::Add | T::Sub) && p.next().typ == T::Sub {
                sign = -1.0;
            }
            if !matches!(p.peek(), T::Number | T::Duration) {
                return Err(p.fail_next(None));
            }
            let tok = p.next();
            Ok(Some(sign * p.number_value(&tok)))
        })?;
        let range = e.range();
        if let Some(ts) = ts {
            if !ts.is_finite() || ts >= 9.223_372_036_854_776e18 || ts <= -9.223_372_036_854_776e18
            {
                self.err(
                    range,
                    format!("timestamp out of bounds for @ modifier: {}", go_f(ts)),
                );
            }
        }
        let last_closing = self.last_closing;
        let (mods, end): (&mut Mods, &mut Pos) = match &mut e {
            Node::Vector { mods, range, .. } => (mods, &mut range.1),
            Node::Matrix { vs, end } => match vs.as_mut() {
                Node::Vector { mods, .. } => (mods, end),
                _ => {
                    self.err(range, "ranges only allowed for vector selectors");
                    return Ok(e);
                }
            },
            Node::Subquery { mods, end, .. } => (mods, end),
            _ => {
                self.err(range, "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery");
                return Ok(e);
            }
        };
        if mods.at {
            if self.first.is_none() {
                self.first = Some(Diag {
                    start: range.0,
                    msg: "@ <timestamp> may not be set multiple times".into(),
                });
            }
            return Ok(e);
        }
        mods.at = true;
        *end = last_closing;
        Ok(e)
    }

    fn set_extended(&mut self, e: &mut Node, kw: T) {
        let name = if kw == T::Anchored {
            "anchored"
        } else {
            "smoothed"
        };
        let range = e.range();
        if !self.opts.extended_range_selectors {
            self.err(
                range,
                format!("{name} modifier is experimental and not enabled"),
            );
            return;
        }
        let mods = match e {
            Node::Vector { mods, .. } => mods,
            Node::Matrix { vs, .. } => match vs.as_mut() {
                Node::Vector { mods, .. } => mods,
                _ => return,
            },
            Node::Subquery { .. } => {
                self.err(
                    range,
                    format!("{name} modifier is not supported for subqueries"),
                );
                return;
            }
            _ => {
                self.err(range, format!("{name} modifier not implemented"));
                return;
            }
        };
        if kw == T::Anchored {
            mods.anchored = true;
        } else {
            mods.smoothed = true;
        }
        if mods.anchored && mods.smoothed {
            self.err(
                range,
                "anchored and smoothed modifiers cannot be used together",
            );
        }
    }

    fn range_or_subquery(&mut self, e: Node) -> PResult<Node> {
        let lb = self.next();
        self.framed(Frame::RangeStart, |p| p.positive_duration())?;
        match self.peek() {
            T::RightBracket => {
                let rb = self.next();
                let msg = match &e {
                    Node::Vector { mods, .. } if mods.offset => {
                        Some("no offset modifiers allowed before range")
                    }
                    Node::Vector { mods, .. } if mods.at => {
                        Some("no @ modifiers allowed before range")
                    }
                    Node::Vector { .. } => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(msg) = msg {
                    self.err((lb.pos, rb.end()), msg);
                }
                Ok(Node::Matrix {
                    vs: Box::new(e),
                    end: self.last_closing,
                })
            }
            T::Colon => {
                self.next();
                if self.peek() != T::RightBracket {
                    if !starts_duration(self.peek()) {
                        return Err(self.fail_next(Some(Frame::StepStart.words())));
                    }
                    self.framed(Frame::StepStart, |p| p.positive_duration())?;
                    if self.peek() != T::RightBracket {
                        return Err(self.fail_next(Some(Frame::StepEnd.words())));
                    }
                }
                let rb = self.next();
                Ok(Node::Subquery {
                    expr: Box::new(e),
                    end: rb.pos + 1,
                    mods: Mods::default(),
                })
            }
            _ => Err(self.fail_next(Some(Frame::RangeEnd.words()))),
        }
    }

    // --- Duration expressions ------------------------------------------------------------

    fn experimental(&mut self, range: Range) {
        if !self.opts.duration_expressions {
            self.err(range, "experimental duration expression is not enabled");
        }
    }

    /// `positive_duration_expr`.
    fn positive_duration(&mut self) -> PResult<Node> {
        if !starts_duration(self.peek()) {
            return Err(self.fail_next(None));
        }
        let d = self.duration_expr(0)?;
        if let Node::Number { val, range } = d {
            if val <= 0.0 {
                self.err(range, "duration must be greater than 0");
                return Ok(Node::Number { val: 0.0, range });
            }
        }
        Ok(d)
    }

    /// `offset_duration_expr`.
    fn offset_duration(&mut self) -> PResult<Node> {
        match self.peek() {
            T::Number | T::Duration => {
                let tok = self.next();
                let n = self.number_literal(&tok);
                Ok(self.literal_range_check(n))
            }
            T::Add | T::Sub if matches!(self.peek_n(1).typ, T::Number | T::Duration) => {
                let op = self.next();
                let tok = self.next();
                let val = self.number_value(&tok);
                let val = if op.typ == T::Sub { -val } else { val };
                if duration_out_of_range(val) {
                    self.err((op.pos, op.end()), "duration out of range");
                    return Ok(Node::Number {
                        val: 0.0,
                        range: (0, 0),
                    });
                }
                Ok(Node::Number {
                    val,
                    range: (op.pos, tok.end()),
                })
            }
            T::Step | T::Range | T::MaxOf | T::MinOf => self.duration_atom(None),
            T::Add | T::Sub => {
                let op = self.next();
                if matches!(self.peek(), T::Step | T::Range | T::MaxOf | T::MinOf) {
                    return self.duration_atom(Some(op.pos));
                }
                let inner = self.duration_expr(6)?;
                Ok(self.apply_unary(&op, inner))
            }
            T::LeftParen => self.duration_expr(0),
            _ => Err(self.fail_next(None)),
        }
    }

    fn literal_range_check(&mut self, n: Node) -> Node {
        if let Node::Number { val, range } = n {
            if duration_out_of_range(val) {
                self.err(range, "duration out of range");
                return Node::Number { val: 0.0, range };
            }
        }
        n
    }

    fn apply_unary(&mut self, op: &Item, e: Node) -> Node {
        match e {
            Node::Number { val, range } => {
                let val = if op.typ == T::Sub { -val } else { val };
                if duration_out_of_range(val) {
                    self.err((op.pos, op.end()), "duration out of range");
                    return Node::Number { val: 0.0, range };
                }
                Node::Number {
                    val,
                    range: (op.pos, range.1),
                }
            }
            e if op.typ == T::Sub => Node::DurationExpr {
                range: (op.pos, e.range().1),
            },
            e => e,
        }
    }

    /// `step()`, `range()`, `max_of(a, b)`, `min_of(a, b)`, optionally behind a unary operator
    /// that starts at `op_start`.
    fn duration_atom(&mut self, op_start: Option<Pos>) -> PResult<Node> {
        let kw = self.next();
        if self.peek() != T::LeftParen {
            return Err(self.fail_next(None));
        }
        self.next();
        let mut range = None;
        if matches!(kw.typ, T::MaxOf | T::MinOf) {
            if !starts_duration(self.peek()) {
                return Err(self.fail_next(None));
            }
            let a = self.duration_expr(0)?;
            if self.peek() != T::Comma {
                return Err(self.fail_next(None));
            }
            self.next();
            if !starts_duration(self.peek()) {
                return Err(self.fail_next(None));
            }
            let b = self.duration_expr(0)?;
            range = Some((a.range().0, b.range().1));
        }
        if self.peek() != T::RightParen {
            return Err(self.fail_next(None));
        }
        let rp = self.next();
        let mut range = range.unwrap_or((kw.pos, rp.end()));
        if let Some(s) = op_start {
            range.0 = s;
        }
        self.experimental(range);
        Ok(Node::DurationExpr { range })
    }

    fn duration_expr(&mut self, min_prec: u8) -> PResult<Node> {
        self.depth += 1;
        let r = self.duration_expr_inner(min_prec);
        self.depth -= 1;
        r
    }

    fn duration_expr_inner(&mut self, min_prec: u8) -> PResult<Node> {
        self.budget()?;
        let mut lhs = match self.peek() {
            T::Number | T::Duration => {
                let tok = self.next();
                let n = self.number_literal(&tok);
                self.literal_range_check(n)
            }
            T::Add | T::Sub => {
                let op = self.next();
                if !starts_duration(self.peek()) {
                    return Err(self.fail_next(None));
                }
                let inner = self.duration_expr(6)?;
                self.apply_unary(&op, inner)
            }
            T::Step | T::Range | T::MaxOf | T::MinOf => self.duration_atom(None)?,
            T::LeftParen => {
                let l = self.next();
                if !starts_duration(self.peek()) {
                    return Err(self.fail_next(None));
                }
                let inner = self.duration_expr(0)?;
                if self.peek() != T::RightParen {
                    return Err(self.fail_next(None));
                }
                self.next();
                self.experimental(inner.range());
                match inner {
                    Node::Number { range, .. } => Node::DurationExpr {
                        range: (l.pos, range.1),
                    },
                    e => e,
                }
            }
            _ => return Err(self.fail_next(None)),
        };
        loop {
            let op = self.peek();
            let prec = match op {
                T::Add | T::Sub => 4,
                T::Mul | T::Div | T::Mod => 5,
                T::Pow => 6,
                _ => return Ok(lhs),
            };
            if prec < min_prec {
                return Ok(lhs);
            }
            let op_tok = self.next();
            if !starts_duration(self.peek()) {
                return Err(self.fail_next(None));
            }
            let rhs = self.duration_expr(if op == T::Pow { prec } else { prec + 1 })?;
            self.experimental(lhs.range());
            if matches!(op, T::Div | T::Mod)
                && matches!(rhs, Node::Number { val, .. } if val == 0.0)
            {
                let what = if op == T::Div { "division" } else { "modulo" };
                self.err((op_tok.pos, op_tok.end()), format!("{what} by zero"));
                lhs = Node::Number {
                    val: 0.0,
                    range: (0, 0),
                };
                continue;
            }
            lhs = Node::DurationExpr {
                range: (lhs.range().0, rhs.range().1),
            };
        }
    }
}

pub(super) fn starts_duration(t: T) -> bool {
    matches!(
        t,
        T::Number
            | T::Duration
            | T::Add
            | T::Sub
            | T::Step
            | T::Range
            | T::MaxOf
            | T::MinOf
            | T::LeftParen
    )
}

struct BinMod {
    bool_mod: bool,
    card: Card,
    on: bool,
    matching: Vec<String>,
    include: Vec<String>,
    fill: bool,
}

/// Go's `%f` for the @ timestamp bounds message.
fn go_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v:.6}")
    }
}
