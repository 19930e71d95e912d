//! A lexer that splits a query into the same items, at the same byte offsets, as Prometheus'
//! PromQL lexer, and fails where and how it fails. Only expression mode (no series
//! descriptions or histogram literals).

use super::{go_quote, go_quote_rune, go_unicode};

/// Item types. The order of the groups matters only for the classification helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum T {
    Eof,
    Error,
    Comment,
    Identifier,
    MetricIdentifier,
    Number,
    Duration,
    String,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Comma,
    Eql,
    Colon,
    // Operators.
    Add,
    Div,
    Eqlc,
    EqlRegex,
    Gte,
    Gtr,
    TrimUpper,
    TrimLower,
    Land,
    Lor,
    Lss,
    Lte,
    Lunless,
    Mod,
    Mul,
    Neq,
    NeqRegex,
    Pow,
    Sub,
    At,
    Atan2,
    // Aggregators.
    Avg,
    Bottomk,
    Count,
    CountValues,
    Group,
    Max,
    Min,
    Quantile,
    Stddev,
    Stdvar,
    Sum,
    Topk,
    Limitk,
    LimitRatio,
    // Keywords.
    Bool,
    By,
    GroupLeft,
    GroupRight,
    Fill,
    FillLeft,
    FillRight,
    Ignoring,
    Offset,
    Smoothed,
    Anchored,
    On,
    Without,
    // Preprocessors.
    Start,
    End,
    Step,
    Range,
    MaxOf,
    MinOf,
}

impl T {
    pub(super) fn is_operator(self) -> bool {
        (T::Add as u8..=T::Atan2 as u8).contains(&(self as u8))
    }

    pub(super) fn is_aggregator(self) -> bool {
        (T::Avg as u8..=T::LimitRatio as u8).contains(&(self as u8))
    }

    pub(super) fn is_keyword(self) -> bool {
        (T::Bool as u8..=T::Without as u8).contains(&(self as u8))
    }

    pub(super) fn is_comparison(self) -> bool {
        matches!(self, T::Eqlc | T::Neq | T::Lte | T::Lss | T::Gte | T::Gtr)
    }

    pub(super) fn is_set_operator(self) -> bool {
        matches!(self, T::Land | T::Lor | T::Lunless)
    }

    /// The canonical spelling (Prometheus' `ItemTypeStr`), if the type has one.
    pub(super) fn type_str(self) -> Option<&'static str> {
        Some(match self {
            T::LeftParen => "(",
            T::RightParen => ")",
            T::LeftBrace => "{",
            T::RightBrace => "}",
            T::LeftBracket => "[",
            T::RightBracket => "]",
            T::Comma => ",",
            T::Eql => "=",
            T::Colon => ":",
            T::Sub => "-",
            T::Add => "+",
            T::Mul => "*",
            T::Mod => "%",
            T::Div => "/",
            T::Eqlc => "==",
            T::Neq => "!=",
            T::Lte => "<=",
            T::Lss => "<",
            T::Gte => ">=",
            T::Gtr => ">",
            T::TrimUpper => "</",
            T::TrimLower => ">/",
            T::EqlRegex => "=~",
            T::NeqRegex => "!~",
            T::Pow => "^",
            T::At => "@",
            _ => return KEYWORDS.iter().find(|(_, t)| *t == self).map(|(s, _)| *s),
        })
    }
}

/// Words the lexer turns into keyword items (matched case-insensitively).
const KEYWORDS: &[(&str, T)] = &[
    ("and", T::Land),
    ("or", T::Lor),
    ("unless", T::Lunless),
    ("atan2", T::Atan2),
    ("sum", T::Sum),
    ("avg", T::Avg),
    ("count", T::Count),
    ("min", T::Min),
    ("max", T::Max),
    ("group", T::Group),
    ("stddev", T::Stddev),
    ("stdvar", T::Stdvar),
    ("topk", T::Topk),
    ("bottomk", T::Bottomk),
    ("count_values", T::CountValues),
    ("quantile", T::Quantile),
    ("limitk", T::Limitk),
    ("limit_ratio", T::LimitRatio),
    ("offset", T::Offset),
    ("smoothed", T::Smoothed),
    ("anchored", T::Anchored),
    ("by", T::By),
    ("without", T::Without),
    ("on", T::On),
    ("ignoring", T::Ignoring),
    ("group_left", T::GroupLeft),
    ("group_right", T::GroupRight),
    ("fill", T::Fill),
    ("fill_left", T::FillLeft),
    ("fill_right", T::FillRight),
    ("bool", T::Bool),
    ("start", T::Start),
    ("end", T::End),
    ("step", T::Step),
    ("range", T::Range),
    ("max_of", T::MaxOf),
    ("min_of", T::MinOf),
];

fn keyword(word: &str) -> Option<T> {
    let lower = word.to_ascii_lowercase();
    if lower == "inf" || lower == "nan" {
        return Some(T::Number);
    }
    KEYWORDS.iter().find(|(s, _)| *s == lower).map(|(_, t)| *t)
}

fn duration_keyword(word: &str) -> Option<T> {
    match word.to_ascii_lowercase().as_str() {
        "step" => Some(T::Step),
        "range" => Some(T::Range),
        "max_of" => Some(T::MaxOf),
        "min_of" => Some(T::MinOf),
        _ => None,
    }
}

/// One lexed item: its type, byte offset and text (for errors: the message).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Item {
    pub typ: T,
    pub pos: usize,
    pub val: String,
}

impl Item {
    pub(super) fn end(&self) -> usize {
        self.pos + self.val.len()
    }

    /// Prometheus' `Item.String()`.
    fn string(&self) -> String {
        match self.typ {
            T::Eof => "EOF".into(),
            T::Error => self.val.clone(),
            T::Identifier | T::MetricIdentifier => go_quote(&self.val),
            t if t.is_keyword() => format!("<{}>", self.val),
            t if t.is_operator() => format!("<op:{}>", self.val),
            t if t.is_aggregator() => format!("<aggr:{}>", self.val),
            _ if self.val.len() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                format!("{}...", go_quote(&head))
            }
            _ => go_quote(&self.val),
        }
    }

    /// Prometheus' `Item.desc()`, as used in "unexpected ..." messages.
    pub(super) fn desc(&self) -> String {
        if self.typ.type_str().is_some() {
            return self.string();
        }
        let kind = match self.typ {
            T::Eof => return "end of input".into(),
            T::Error => "error",
            T::Comment => "comment",
            T::Identifier => "identifier",
            T::MetricIdentifier => "metric identifier",
            T::String => "string",
            T::Number => "number",
            T::Duration => "duration",
            _ => "item",
        };
        format!("{kind} {}", self.string())
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Statements,
    InsideBraces,
    LineComment,
    Space,
    String,
    RawString,
    Escape,
    NumberOrDuration,
    KeywordOrIdentifier,
    Identifier,
    DurationExpr,
}

pub(super) struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    width: usize,
    paren_depth: i64,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
    got_duration: bool,
    string_open: char,
    state: Option<State>,
    item: Option<Item>,
}

fn is_space(c: Option<char>) -> bool {
    matches!(c, Some(' ' | '\t' | '\n' | '\r'))
}

fn is_alpha(c: Option<char>) -> bool {
    matches!(c, Some('_' | 'a'..='z' | 'A'..='Z'))
}

fn is_digit(c: Option<char>) -> bool {
    matches!(c, Some('0'..='9'))
}

fn is_alnum(c: Option<char>) -> bool {
    is_alpha(c) || is_digit(c)
}

fn is_duration_keyword_start(c: Option<char>) -> bool {
    matches!(c.map(|c| c.to_ascii_lowercase()), Some('s' | 'r' | 'm'))
}

fn digit_val(c: Option<char>) -> u32 {
    match c {
        Some(c @ '0'..='9') => c as u32 - '0' as u32,
        Some(c @ 'a'..='f') => c as u32 - 'a' as u32 + 10,
        Some(c @ 'A'..='F') => c as u32 - 'A' as u32 + 10,
        _ => 16,
    }
}

impl<'a> Lexer<'a> {
    pub(super) fn new(input: &'a str) -> Self {
        Lexer {
            input,
            pos: 0,
            start: 0,
            width: 0,
            paren_depth: 0,
            brace_open: false,
            bracket_open: false,
            got_colon: false,
            got_duration: false,
            string_open: '"',
            state: Some(State::Statements),
            item: None,
        }
    }

    /// Start of the item being scanned (where Prometheus places lexer errors).
    pub(super) fn start(&self) -> usize {
        self.start
    }

    fn next(&mut self) -> Option<char> {
        match self.input[self.pos..].chars().next() {
            Some(c) => {
                self.width = c.len_utf8();
                self.pos += self.width;
                Some(c)
            }
            None => {
                self.width = 0;
                None
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn backup(&mut self) {
        self.pos -= self.width;
    }

    fn emit(&mut self, typ: T) {
        self.item = Some(Item {
            typ,
            pos: self.start,
            val: self.input[self.start..self.pos].to_string(),
        });
        self.start = self.pos;
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.next() {
            Some(c) if valid.contains(c) => true,
            _ => {
                self.backup();
                false
            }
        }
    }

    fn is(&self, valid: &str) -> bool {
        self.peek().is_some_and(|c| valid.contains(c))
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    /// Records an error item; the returned state (`None`) ends the scan.
    fn errorf(&mut self, msg: String) -> Option<State> {
        self.item = Some(Item {
            typ: T::Error,
            pos: self.start,
            val: msg,
        });
        None
    }

    /// The next item (after the end: `Eof` items forever).
    pub(super) fn next_item(&mut self) -> Item {
        self.item = None;
        while self.item.is_none() {
            match self.state {
                Some(s) => self.state = self.step(s),
                None => self.emit(T::Eof),
            }
        }
        self.item.take().expect("an item was scanned")
    }

    fn step(&mut self, s: State) -> Option<State> {
        match s {
            State::Statements => self.lex_statements(),
            State::InsideBraces => self.lex_inside_braces(),
            State::LineComment => self.lex_line_comment(),
            State::Space => self.lex_space(),
            State::String => self.lex_string(),
            State::RawString => self.lex_raw_string(),
            State::Escape => self.lex_escape(),
            State::NumberOrDuration => self.lex_number_or_duration(),
            State::KeywordOrIdentifier => self.lex_keyword_or_identifier(),
            State::Identifier => self.lex_identifier(),
            State::DurationExpr => self.lex_duration_expr(),
        }
    }

    fn lex_statements(&mut self) -> Option<State> {
        if self.brace_open {
            return Some(State::InsideBraces);
        }
        if self.input[self.pos..].starts_with('#') {
            return Some(State::LineComment);
        }
        let r = self.next();
        match r {
            None => {
                if self.paren_depth != 0 {
                    return self.errorf("unclosed left parenthesis".into());
                }
                if self.bracket_open {
                    return self.errorf("unclosed left bracket".into());
                }
                self.emit(T::Eof);
                return None;
            }
            Some(',') => self.emit(T::Comma),
            _ if is_space(r) => return Some(State::Space),
            Some('*') => self.emit(T::Mul),
            Some('/') => self.emit(T::Div),
            Some('%') => self.emit(T::Mod),
            Some('+') => self.emit(T::Add),
            Some('-') => self.emit(T::Sub),
            Some('^') => self.emit(T::Pow),
            Some('=') => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(T::Eqlc);
                }
                Some('~') => {
                    return self.errorf(format!(
                        "unexpected character after '=': {}",
                        go_quote_rune(Some('~'))
                    ));
                }
                _ => self.emit(T::Eql),
            },
            Some('!') => {
                let t = self.next();
                if t != Some('=') {
                    return self.errorf(format!(
                        "unexpected character after '!': {}",
                        go_quote_rune(t)
                    ));
                }
                self.emit(T::Neq);
            }
            Some('<') => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(T::Lte);
                }
                Some('/') => {
                    self.next();
                    self.emit(T::TrimUpper);
                }
                _ => self.emit(T::Lss),
            },
            Some('>') => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(T::Gte);
                }
                Some('/') => {
                    self.next();
                    self.emit(T::TrimLower);
                }
                _ => self.emit(T::Gtr),
            },
            _ if is_digit(r) || (r == Some('.') && is_digit(self.peek())) => {
                self.backup();
                return Some(State::NumberOrDuration);
            }
            Some(q @ ('"' | '\'')) => {
                self.string_open = q;
                return Some(State::String);
            }
            Some('`') => {
                self.string_open = '`';
                return Some(State::RawString);
            }
            _ if is_alpha(r) || r == Some(':') => {
                if !self.bracket_open {
                    self.backup();
                    return Some(State::KeywordOrIdentifier);
                }
                if r == Some(':') {
                    if self.got_colon {
                        return self.errorf(format!("unexpected colon {}", go_quote_rune(r)));
                    }
                    self.emit(T::Colon);
                    self.got_colon = true;
                    return Some(State::Statements);
                }
                if is_duration_keyword_start(r) && self.scan_duration_keyword() {
                    return Some(State::Statements);
                }
                return self.errorf(format!(
                    "unexpected character: {}, expected {}",
                    go_quote_rune(r),
                    go_quote_rune(Some(':'))
                ));
            }
            Some('(') => {
                self.emit(T::LeftParen);
                self.paren_depth += 1;
            }
            Some(')') => {
                self.emit(T::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self
                        .errorf(format!("unexpected right parenthesis {}", go_quote_rune(r)));
                }
            }
            Some('{') => {
                self.emit(T::LeftBrace);
                self.brace_open = true;
                return Some(State::InsideBraces);
            }
            Some('[') => {
                if self.bracket_open {
                    return self.errorf(format!("unexpected left bracket {}", go_quote_rune(r)));
                }
                self.got_colon = false;
                self.emit(T::LeftBracket);
                while is_space(self.peek()) {
                    self.next();
                }
                self.ignore();
                self.bracket_open = true;
                return Some(State::DurationExpr);
            }
            Some(']') => {
                if !self.bracket_open {
                    return self.errorf(format!("unexpected right bracket {}", go_quote_rune(r)));
                }
                self.emit(T::RightBracket);
                self.bracket_open = false;
            }
            Some('@') => self.emit(T::At),
            _ => return self.errorf(format!("unexpected character: {}", go_quote_rune(r))),
        }
        Some(State::Statements)
    }

    fn lex_inside_braces(&mut self) -> Option<State> {
        if self.input[self.pos..].starts_with('#') {
            return Some(State::LineComment);
        }
        let r = self.next();
        match r {
            None => return self.errorf("unexpected end of input inside braces".into()),
            _ if is_space(r) => return Some(State::Space),
            _ if is_alpha(r) => {
                self.backup();
                return Some(State::Identifier);
            }
            Some(',') => self.emit(T::Comma),
            Some(q @ ('"' | '\'')) => {
                self.string_open = q;
                return Some(State::String);
            }
            Some('`') => {
                self.string_open = '`';
                return Some(State::RawString);
            }
            Some('=') => {
                if self.next() == Some('~') {
                    self.emit(T::EqlRegex);
                } else {
                    self.backup();
                    self.emit(T::Eql);
                }
            }
            Some('!') => match self.next() {
                Some('~') => self.emit(T::NeqRegex),
                Some('=') => self.emit(T::Neq),
                nr => {
                    return self.errorf(format!(
                        "unexpected character after '!' inside braces: {}",
                        go_quote_rune(nr)
                    ))
                }
            },
            Some('{') => return self.errorf(format!("unexpected left brace {}", go_quote_rune(r))),
            Some('}') => {
                self.emit(T::RightBrace);
                self.brace_open = false;
                return Some(State::Statements);
            }
            _ => {
                return self.errorf(format!(
                    "unexpected character inside braces: {}",
                    go_quote_rune(r)
                ))
            }
        }
        Some(State::InsideBraces)
    }

    fn lex_line_comment(&mut self) -> Option<State> {
        self.pos += 1;
        loop {
            match self.next() {
                Some('\r' | '\n') | None => break,
                _ => {}
            }
        }
        self.backup();
        self.emit(T::Comment);
        Some(State::Statements)
    }

    fn lex_space(&mut self) -> Option<State> {
        while is_space(self.peek()) {
            self.next();
        }
        self.ignore();
        Some(State::Statements)
    }

    fn lex_string(&mut self) -> Option<State> {
        loop {
            match self.next() {
                Some('\\') => return Some(State::Escape),
                Some('\u{fffd}') => return self.errorf("invalid UTF-8 rune".into()),
                None | Some('\n') => return self.errorf("unterminated quoted string".into()),
                Some(c) if c == self.string_open => break,
                _ => {}
            }
        }
        self.emit(T::String);
        Some(State::Statements)
    }

    fn lex_raw_string(&mut self) -> Option<State> {
        loop {
            match self.next() {
                Some('\u{fffd}') => return self.errorf("invalid UTF-8 rune".into()),
                None => return self.errorf("unterminated raw string".into()),
                Some('`') => break,
                _ => {}
            }
        }
        self.emit(T::String);
        Some(State::Statements)
    }

    fn lex_escape(&mut self) -> Option<State> {
        let mut ch = self.next();
        let (mut n, base, max): (u32, u32, u32) = match ch {
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => return Some(State::String),
            Some(c) if c == self.string_open => return Some(State::String),
            Some('0'..='7') => (3, 8, 255),
            Some('x') => {
                ch = self.next();
                (2, 16, 255)
            }
            Some('u') => {
                ch = self.next();
                (4, 16, 0x10ffff)
            }
            Some('U') => {
                ch = self.next();
                (8, 16, 0x10ffff)
            }
            None => return self.errorf("escape sequence not terminated".into()),
            Some(c) => {
                return self.errorf(format!("unknown escape sequence {}", go_unicode(c)));
            }
        };
        let mut x: u32 = 0;
        while n > 0 {
            let d = digit_val(ch);
            if d >= base {
                return match ch {
                    None => self.errorf("escape sequence not terminated".into()),
                    Some(c) => self.errorf(format!(
                        "illegal character {} in escape sequence",
                        go_unicode(c)
                    )),
                };
            }
            x = x.wrapping_mul(base).wrapping_add(d);
            n -= 1;
            if n > 0 {
                ch = self.next();
            }
        }
        if x > max || (0xd800..0xe000).contains(&x) {
            return self.errorf("escape sequence is an invalid Unicode code point".into());
        }
        Some(State::String)
    }

    fn lex_number_or_duration(&mut self) -> Option<State> {
        if self.scan_number() {
            self.emit(T::Number);
            return Some(State::Statements);
        }
        if self.accept_remaining_duration() {
            self.backup();
            self.emit(T::Duration);
            return Some(State::Statements);
        }
        let text = go_quote(&self.input[self.start..self.pos]);
        self.errorf(format!("bad number or duration syntax: {text}"))
    }

    fn accept_remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            while self.accept("0123456789") {}
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        let c = self.next();
        !is_alnum(c)
    }

    fn scan_number(&mut self) -> bool {
        let initial = self.pos;
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            self.accept("_");
            digits = "0123456789abcdefABCDEF";
        }
        let mut all = String::from(digits);
        all.push_str("._eE");
        self.accept(".");
        self.accept(digits);
        let mut dot = false;
        let mut exp = false;
        while self.is(&all) {
            if self.is(".") && dot {
                self.accept(".");
                return false;
            }
            if self.is("eE") && exp {
                self.accept("eE");
                return false;
            }
            if self.accept(".") {
                dot = true;
                if self.accept("_.") {
                    return false;
                }
                if digits.len() > 10 {
                    return false;
                }
                continue;
            }
            if self.accept("eE") {
                exp = true;
                self.accept("+-");
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            if self.accept("_") {
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            self.accept_run(digits);
        }
        if self.pos == initial {
            return false;
        }
        !is_alnum(self.peek())
    }

    fn scan_duration_keyword(&mut self) -> bool {
        loop {
            let r = self.next();
            if !is_alpha(r) {
                self.backup();
                return match duration_keyword(&self.input[self.start..self.pos]) {
                    Some(t) => {
                        self.emit(t);
                        true
                    }
                    None => false,
                };
            }
        }
    }

    fn lex_identifier(&mut self) -> Option<State> {
        while is_alnum(self.next()) {}
        self.backup();
        self.emit(T::Identifier);
        Some(State::Statements)
    }

    fn lex_keyword_or_identifier(&mut self) -> Option<State> {
        loop {
            let r = self.next();
            if is_alnum(r) || r == Some(':') {
                continue;
            }
            self.backup();
            let word = &self.input[self.start..self.pos];
            match keyword(word) {
                Some(T::Fill | T::FillLeft | T::FillRight) if !self.followed_by_left_paren() => {
                    self.emit(T::Identifier)
                }
                Some(kw) => self.emit(kw),
                None if !word.contains(':') => self.emit(T::Identifier),
                None => self.emit(T::MetricIdentifier),
            }
            return Some(State::Statements);
        }
    }

    fn followed_by_left_paren(&self) -> bool {
        self.input[self.pos..]
            .chars()
            .find(|c| !is_space(Some(*c)))
            .is_some_and(|c| c == '(')
    }

    fn lex_duration_expr(&mut self) -> Option<State> {
        let r = self.next();
        match r {
            None => self.errorf("unexpected end of input in duration expression".into()),
            Some(']') => {
                self.emit(T::RightBracket);
                self.bracket_open = false;
                self.got_colon = false;
                Some(State::Statements)
            }
            Some(':') => {
                self.emit(T::Colon);
                if !self.got_duration {
                    return self
                        .errorf("unexpected colon before duration in duration expression".into());
                }
                if self.got_colon {
                    return self.errorf("unexpected repeated colon in duration expression".into());
                }
                self.got_colon = true;
                Some(State::DurationExpr)
            }
            Some('(') => {
                self.emit(T::LeftParen);
                self.paren_depth += 1;
                Some(State::DurationExpr)
            }
            Some(')') => {
                self.emit(T::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self
                        .errorf(format!("unexpected right parenthesis {}", go_quote_rune(r)));
                }
                Some(State::DurationExpr)
            }
            _ if is_space(r) => {
                while is_space(self.peek()) {
                    self.next();
                }
                self.ignore();
                Some(State::DurationExpr)
            }
            Some(c @ ('+' | '-' | '*' | '/' | '%' | '^' | ',')) => {
                self.emit(match c {
                    '+' => T::Add,
                    '-' => T::Sub,
                    '*' => T::Mul,
                    '/' => T::Div,
                    '%' => T::Mod,
                    '^' => T::Pow,
                    _ => T::Comma,
                });
                Some(State::DurationExpr)
            }
            _ if is_duration_keyword_start(r) => {
                if self.scan_duration_keyword() {
                    return Some(State::DurationExpr);
                }
                self.errorf(format!(
                    "unexpected character in duration expression: {}",
                    go_quote_rune(r)
                ))
            }
            _ if is_digit(r) || (r == Some('.') && is_digit(self.peek())) => {
                self.backup();
                self.got_duration = true;
                Some(State::NumberOrDuration)
            }
            _ => self.errorf(format!(
                "unexpected character in duration expression: {}",
                go_quote_rune(r)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(q: &str) -> Vec<(T, usize, String)> {
        let mut l = Lexer::new(q);
        let mut out = Vec::new();
        loop {
            let it = l.next_item();
            let done = matches!(it.typ, T::Eof | T::Error);
            out.push((it.typ, it.pos, it.val));
            if done {
                return out;
            }
        }
    }

    #[test]
    fn lexes_like_prometheus() {
        assert_eq!(
            items("sum(rate(x{a=~\"b\"}[5m:1m]))"),
            vec![
                (T::Sum, 0, "sum".into()),
                (T::LeftParen, 3, "(".into()),
                (T::Identifier, 4, "rate".into()),
                (T::LeftParen, 8, "(".into()),
                (T::Identifier, 9, "x".into()),
                (T::LeftBrace, 10, "{".into()),
                (T::Identifier, 11, "a".into()),
                (T::EqlRegex, 12, "=~".into()),
                (T::String, 14, "\"b\"".into()),
                (T::RightBrace, 17, "}".into()),
                (T::LeftBracket, 18, "[".into()),
                (T::Duration, 19, "5m".into()),
                (T::Colon, 21, ":".into()),
                (T::Duration, 22, "1m".into()),
                (T::RightBracket, 24, "]".into()),
                (T::RightParen, 25, ")".into()),
                (T::RightParen, 26, ")".into()),
                (T::Eof, 27, "".into()),
            ]
        );
        assert_eq!(
            items("0deadbeef").last().unwrap(),
            &(T::Error, 0, "bad number or duration syntax: \"0de\"".into())
        );
        assert_eq!(
            items("1 !~ 1").last().unwrap(),
            &(T::Error, 2, "unexpected character after '!': '~'".into())
        );
        assert_eq!(
            items("fill + fill_left(1)")
                .iter()
                .map(|i| i.0)
                .collect::<Vec<_>>(),
            vec![
                T::Identifier,
                T::Add,
                T::FillLeft,
                T::LeftParen,
                T::Number,
                T::RightParen,
                T::Eof
            ]
        );
    }
}
