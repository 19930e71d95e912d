//! Expected errors derived from the expectations of Prometheus' parser tests
//! (`promql/parser/parse_test.go`: the first error of each failing case, at its start position),
//! plus cases worked out from Prometheus' grammar.

use super::{describe, Options};

/// Prometheus' parser tests run with experimental duration expressions and extended range
/// selectors enabled.
const PROMETHEUS_TEST_OPTIONS: Options = Options {
    duration_expressions: true,
    extended_range_selectors: true,
};

/// (query, Prometheus' error).
const PROMETHEUS_CASES: &[(&str, &str)] = &[
    ("", "unknown position: parse error: no expression found in input"),
    ("# just a comment\n\n", "1:1: parse error: no expression found in input"),
    ("1+", "1:3: parse error: unexpected end of input"),
    (".", "1:1: parse error: unexpected character: '.'"),
    ("2.5.", r#"1:1: parse error: bad number or duration syntax: "2.5.""#),
    ("100..4", r#"1:1: parse error: bad number or duration syntax: "100..""#),
    ("0deadbeef", r#"1:1: parse error: bad number or duration syntax: "0de""#),
    ("1 /", "1:4: parse error: unexpected end of input"),
    ("*1", "1:1: parse error: unexpected <op:*>"),
    ("(1))", "1:5: parse error: unexpected right parenthesis ')'"),
    ("((1)", "1:5: parse error: unclosed left parenthesis"),
    ("999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999", r#"1:1: parse error: error parsing number: strconv.ParseFloat: parsing "999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999": value out of range"#),
    ("(", "1:2: parse error: unclosed left parenthesis"),
    ("1 and 1", r#"1:1: parse error: set operator "and" not allowed in binary scalar expression"#),
    ("1 == 1", "1:3: parse error: comparisons between scalars must use BOOL modifier"),
    ("1 or 1", r#"1:1: parse error: set operator "or" not allowed in binary scalar expression"#),
    ("1 unless 1", r#"1:1: parse error: set operator "unless" not allowed in binary scalar expression"#),
    ("1 !~ 1", "1:3: parse error: unexpected character after '!': '~'"),
    ("1 =~ 1", "1:3: parse error: unexpected character after '=': '~'"),
    (r#"-"string""#, r#"1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got "string""#),
    ("-test[5m]", r#"1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got "range vector""#),
    ("*test", "1:1: parse error: unexpected <op:*>"),
    ("@@", "1:1: parse error: unexpected <op:@>"),
    ("1 offset 1d", "1:1: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("foo offset 1s offset 2s", "1:1: parse error: offset may not be set multiple times"),
    ("a - on(b) ignoring(c) d", "1:11: parse error: unexpected <ignoring>"),
    ("foo and 1", r#"1:1: parse error: set operator "and" not allowed in binary scalar expression"#),
    ("1 and foo", r#"1:1: parse error: set operator "and" not allowed in binary scalar expression"#),
    ("foo or 1", r#"1:1: parse error: set operator "or" not allowed in binary scalar expression"#),
    ("1 or foo", r#"1:1: parse error: set operator "or" not allowed in binary scalar expression"#),
    ("foo unless 1", r#"1:1: parse error: set operator "unless" not allowed in binary scalar expression"#),
    ("1 unless foo", r#"1:1: parse error: set operator "unless" not allowed in binary scalar expression"#),
    ("1 or on(bar) foo", "1:1: parse error: vector matching only allowed between instant vectors"),
    ("foo == on(bar) 10", "1:1: parse error: vector matching only allowed between instant vectors"),
    ("foo + group_left(baz) bar", "1:7: parse error: unexpected <group_left>"),
    ("foo and on(bar) group_left(baz) bar", r#"1:1: parse error: no grouping allowed for "and" operation"#),
    ("foo and on(bar) group_right(baz) bar", r#"1:1: parse error: no grouping allowed for "and" operation"#),
    ("foo or on(bar) group_left(baz) bar", r#"1:1: parse error: no grouping allowed for "or" operation"#),
    ("foo or on(bar) group_right(baz) bar", r#"1:1: parse error: no grouping allowed for "or" operation"#),
    ("foo unless on(bar) group_left(baz) bar", r#"1:1: parse error: no grouping allowed for "unless" operation"#),
    ("foo unless on(bar) group_right(baz) bar", r#"1:1: parse error: no grouping allowed for "unless" operation"#),
    (r#"http_requests{group="production"} + on(instance) group_left(job,instance) cpu_count{type="smp"}"#, r#"1:35: parse error: label "instance" must not occur in ON and GROUP clause at once"#),
    ("foo + bool bar", "1:5: parse error: bool modifier can only be used on comparison operators"),
    ("foo + bool 10", "1:5: parse error: bool modifier can only be used on comparison operators"),
    ("foo and bool 10", "1:5: parse error: bool modifier can only be used on comparison operators"),
    ("foo @ +Inf", "1:1: parse error: timestamp out of bounds for @ modifier: +Inf"),
    ("foo @ -Inf", "1:1: parse error: timestamp out of bounds for @ modifier: -Inf"),
    ("foo @ NaN", "1:1: parse error: timestamp out of bounds for @ modifier: NaN"),
    ("{", "1:2: parse error: unexpected end of input inside braces"),
    ("}", "1:1: parse error: unexpected character: '}'"),
    ("some{", "1:6: parse error: unexpected end of input inside braces"),
    ("some}", "1:5: parse error: unexpected character: '}'"),
    ("some_metric{a=b}", r#"1:15: parse error: unexpected identifier "b" in label matching, expected string"#),
    (r#"some_metric{a:b="b"}"#, "1:14: parse error: unexpected character inside braces: ':'"),
    (r#"foo{a*"b"}"#, "1:6: parse error: unexpected character inside braces: '*'"),
    (r#"foo{a>="b"}"#, "1:6: parse error: unexpected character inside braces: '>'"),
    ("foo{gibberish}", r#"1:14: parse error: unexpected "}" in label matching, expected label matching operator"#),
    ("foo{1}", "1:5: parse error: unexpected character inside braces: '1'"),
    ("{}", "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"{x=""}"#, "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"{x=~".*"}"#, "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"{x!~".+"}"#, "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"{x!="a"}"#, "1:1: parse error: vector selector must contain at least one non-empty matcher"),
    (r#"foo{__name__="bar"}"#, r#"1:1: parse error: metric name must not be set twice: "foo" or "bar""#),
    ("foo{__name__= =}", r#"1:15: parse error: unexpected "=" in label matching, expected string"#),
    ("foo{,}", r#"1:5: parse error: unexpected "," in label matching, expected identifier or "}""#),
    (r#"foo{__name__ == "bar"}"#, r#"1:15: parse error: unexpected "=" in label matching, expected string"#),
    (r#"foo{__name__="bar" lol}"#, r#"1:20: parse error: unexpected identifier "lol" in label matching, expected "," or "}""#),
    (r#"foo{"a"=}"#, r#"1:9: parse error: unexpected "}" in label matching, expected string"#),
    ("foo[5mm]", r#"1:5: parse error: bad number or duration syntax: "5mm""#),
    ("foo[5m1]", r#"1:5: parse error: bad number or duration syntax: "5m1""#),
    ("foo[5m:1m1]", r#"1:8: parse error: bad number or duration syntax: "1m1""#),
    ("foo[5y1hs]", r#"1:5: parse error: unknown unit "hs" in duration "5y1hs""#),
    ("foo[5m1h]", r#"1:5: parse error: not a valid duration string: "5m1h""#),
    ("foo[5m1m]", r#"1:5: parse error: not a valid duration string: "5m1m""#),
    ("foo[0m]", "1:5: parse error: duration must be greater than 0"),
    (r#"foo["5m"]"#, r#"1:5: parse error: unexpected character in duration expression: '"'"#),
    ("foo[]", r#"1:5: parse error: unexpected "]" in subquery or range selector, expected number, duration, step(), or range()"#),
    ("foo[-1]", "1:5: parse error: duration must be greater than 0"),
    ("some_metric[5m] OFFSET 1mm", r#"1:24: parse error: bad number or duration syntax: "1mm""#),
    ("some_metric[5m] OFFSET", "1:23: parse error: unexpected end of input in offset, expected number, duration, step(), or range()"),
    ("some_metric OFFSET 1m[5m]", "1:22: parse error: no offset modifiers allowed before range"),
    ("some_metric[5m] @", "1:18: parse error: unexpected end of input in @, expected timestamp"),
    ("some_metric @ 1234 [5m]", "1:20: parse error: no @ modifiers allowed before range"),
    ("some_metric @ start() [5m]", "1:23: parse error: no @ modifiers allowed before range"),
    ("some_metric @ end()[5m]", "1:20: parse error: no @ modifiers allowed before range"),
    ("some_metric offset step()[5m]", "1:26: parse error: no offset modifiers allowed before range"),
    ("(foo + bar)[5m]", "1:12: parse error: ranges only allowed for vector selectors"),
    (r#"sum by ("foo)(some_metric{})"#, "1:9: parse error: unterminated quoted string"),
    ("sum without(==)(some_metric)", "1:13: parse error: unexpected <op:==> in grouping opts, expected label"),
    ("sum without(,)(some_metric)", r#"1:13: parse error: unexpected "," in grouping opts, expected label"#),
    ("sum without(foo,,)(some_metric)", r#"1:17: parse error: unexpected "," in grouping opts, expected label"#),
    ("sum some_metric by (test)", r#"1:5: parse error: unexpected identifier "some_metric""#),
    ("sum (some_metric) by test", r#"1:22: parse error: unexpected identifier "test" in grouping opts, expected "(""#),
    ("sum () by (test)", "1:1: parse error: no arguments for aggregate expression provided"),
    ("MIN keep_common (some_metric)", r#"1:5: parse error: unexpected identifier "keep_common""#),
    ("MIN (some_metric) keep_common", r#"1:19: parse error: unexpected identifier "keep_common""#),
    ("sum (some_metric) without (test) by (test)", "1:34: parse error: unexpected <by>"),
    ("sum without (test) (some_metric) by (test)", "1:34: parse error: unexpected <by>"),
    ("topk(some_metric)", "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1"),
    ("topk(some_metric,)", "1:17: parse error: trailing commas not allowed in function call args"),
    ("topk(some_metric, other_metric)", "1:6: parse error: expected type scalar in aggregation parameter, got instant vector"),
    ("count_values(5, other_metric)", "1:14: parse error: expected type string in aggregation parameter, got scalar"),
    ("rate(some_metric[5m]) @ 1234", "1:1: parse error: @ modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("floor()", r#"1:1: parse error: expected 1 argument(s) in call to "floor", got 0"#),
    ("floor(some_metric, other_metric)", r#"1:1: parse error: expected 1 argument(s) in call to "floor", got 2"#),
    ("floor(some_metric, 1)", r#"1:1: parse error: expected 1 argument(s) in call to "floor", got 2"#),
    ("floor(1)", r#"1:7: parse error: expected type instant vector in call to function "floor", got scalar"#),
    ("hour(some_metric, some_metric, some_metric)", r#"1:1: parse error: expected at most 1 argument(s) in call to "hour", got 3"#),
    ("time(some_metric)", r#"1:1: parse error: expected 0 argument(s) in call to "time", got 1"#),
    ("non_existent_function_far_bar()", r#"1:1: parse error: unknown function with name "non_existent_function_far_bar""#),
    ("rate(some_metric)", r#"1:6: parse error: expected type range vector in call to function "rate", got instant vector"#),
    ("-=", r#"1:2: parse error: unexpected "=""#),
    ("++-++-+-+-<", "1:11: parse error: unexpected <op:<>"),
    ("e-+=/(0)", r#"1:4: parse error: unexpected "=""#),
    ("a>b()", r#"1:3: parse error: unknown function with name "b""#),
    ("rate(avg)", r#"1:6: parse error: expected type range vector in call to function "rate", got instant vector"#),
    (r#"`\``"#, "1:4: parse error: unterminated raw string"),
    (r#""\"#, "1:1: parse error: escape sequence not terminated"),
    (r#""\c""#, "1:1: parse error: unknown escape sequence U+0063 'c'"),
    (r#""\x.""#, "1:1: parse error: illegal character U+002E '.' in escape sequence"),
    (r#"foo{bar="baz"}["#, "1:16: parse error: unexpected end of input in duration expression"),
    ("test[5d] OFFSET 10s [10m:5s]", "1:1: parse error: subquery is only allowed on instant vector, got matrix instead"),
    (r#"(foo + bar{nm="val"})[5m:][10m:5s]"#, "1:1: parse error: subquery is only allowed on instant vector, got matrix instead"),
    ("rate(food[1m])[1h] offset 1h", "1:15: parse error: ranges only allowed for vector selectors"),
    ("rate(food[1m])[1h] @ 100", "1:15: parse error: ranges only allowed for vector selectors"),
    (r#"info(rate(http_request_counter_total{}[5m]), target_info{foo="bar"})"#, "1:46: parse error: expected label selectors only, got vector selector instead"),
    (r#"info(http_request_counter_total{namespace="zzz"}, {foo="bar"} == 1)"#, "1:51: parse error: expected label selectors only"),
    ("foo[step]", r#"1:9: parse error: unexpected "]" in subquery or range selector, expected number, duration, step(), or range()"#),
    ("foo[step()/0d]", "1:11: parse error: division by zero"),
    ("foo[5s/0d]", "1:7: parse error: division by zero"),
    ("foo offset (4d/0)", "1:15: parse error: division by zero"),
    ("foo[5s%0d]", "1:7: parse error: modulo by zero"),
    ("foo offset 9.5e10", "1:12: parse error: duration out of range"),
    ("foo[9.5e10]", "1:5: parse error: duration out of range"),
    ("sum(", "1:5: parse error: unclosed left parenthesis"),
    ("sum(rate(", "1:10: parse error: unclosed left parenthesis"),
    ("foo[5s x 5s]", "1:8: parse error: unexpected character: 'x', expected ':'"),
    ("foo[5s s 5s]", "1:8: parse error: unexpected character: 's', expected ':'"),
    ("1[5m] smoothed", "1:2: parse error: ranges only allowed for vector selectors"),
    ("1[5m] anchored", "1:2: parse error: ranges only allowed for vector selectors"),
    ("foo @ 9223372036854775808", "1:1: parse error: timestamp out of bounds for @ modifier: 9223372036854775808.000000"),
];

/// Cases worked out from the grammar and lexer (with Cairn's options: no experimental syntax).
const GRAMMAR_CASES: &[(&str, &str)] = &[
    ("foo[5m+1m]", "1:5: parse error: experimental duration expression is not enabled"),
    ("foo[5m] anchored", "1:1: parse error: anchored modifier is experimental and not enabled"),
    ("sum(foo bar)", r#"1:9: parse error: unexpected identifier "bar" in aggregation"#),
    ("sum by (a) foo", r#"1:12: parse error: unexpected identifier "foo" in aggregation"#),
    ("sum(foo) by", "1:12: parse error: unexpected end of input in grouping opts, expected \"(\""),
    ("sum(foo) bar", r#"1:10: parse error: unexpected identifier "bar""#),
    ("rate(foo bar)", r#"1:10: parse error: unexpected identifier "bar""#),
    ("foo{a=\"b\",,}", r#"1:11: parse error: unexpected "," in label matching, expected identifier or "}""#),
    ("foo{a=\"b\"} offset", "1:18: parse error: unexpected end of input in offset, expected number, duration, step(), or range()"),
    ("foo[5m", "1:7: parse error: unclosed left bracket"),
    ("foo[5m 1m]", r#"1:8: parse error: unexpected duration "1m" in subquery or range, expected ":" or "]""#),
    ("foo[5m:1m 1m]", r#"1:11: parse error: unexpected duration "1m" in subquery selector, expected "]""#),
    ("foo[5m:,]", r#"1:8: parse error: unexpected "," in subquery selector, expected number, duration, step(), range(), or "]""#),
    ("foo @ bar", r#"1:7: parse error: unexpected identifier "bar" in @, expected timestamp"#),
    ("foo\n  + on(a) bar baz", "2:15: parse error: unexpected identifier \"baz\""),
    ("foo +\n\t# comment\n\t*", "3:2: parse error: unexpected <op:*>"),
    ("\"a\" + \"b\"", "1:1: parse error: binary expression must contain only scalar and instant vector types"),
    ("foo + bar[5m]", "1:7: parse error: binary expression must contain only scalar and instant vector types"),
    ("sum(foo[5m])", "1:5: parse error: expected type instant vector in aggregation expression, got range vector"),
    ("sum by (without) (foo)", "1:9: parse error: unexpected <without> in grouping opts, expected label"),
    ("sum by (a b) (foo)", r#"1:11: parse error: unexpected identifier "b" in grouping opts, expected "," or ")""#),
    ("sum by (\"\") (foo)", r#"1:9: parse error: invalid label name for grouping: """#),
    ("foo{\"bar\" baz}", r#"1:11: parse error: unexpected identifier "baz" in label matching, expected "," or "}""#),
    ("label_replace(foo, \"a\", \"b\", \"c\")", r#"1:1: parse error: expected 5 argument(s) in call to "label_replace", got 4"#),
    ("label_join(foo)", r#"1:1: parse error: expected at least 3 argument(s) in call to "label_join", got 1"#),
    ("round(foo, 1, 2)", r#"1:1: parse error: expected at most 2 argument(s) in call to "round", got 3"#),
    ("vector(\"a\")", r#"1:8: parse error: expected type scalar in call to function "vector", got string"#),
    ("foo offset 5m @ 1 @ 2", "1:1: parse error: @ <timestamp> may not be set multiple times"),
    ("(foo) offset 5m", "1:1: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
    ("foo[5m] @ start() offset 1m [1m:]", "1:1: parse error: subquery is only allowed on instant vector, got matrix instead"),
    ("1 + (2 == 3)", "1:8: parse error: comparisons between scalars must use BOOL modifier"),
    ("foo @ 1 bar", r#"1:9: parse error: unexpected identifier "bar""#),
    ("é", "1:1: parse error: unexpected character: 'é'"),
    ("\"é\" é", "1:6: parse error: unexpected character: 'é'"),
    ("foo ! bar", "1:5: parse error: unexpected character after '!': ' '"),
    ("foo !", "1:5: parse error: unexpected character after '!': '\u{fffd}'"),
    ("foo{a=\"\\u00\"}", "1:7: parse error: illegal character U+0022 '\"' in escape sequence"),
    ("foo{a=\"\\uD800\"}", "1:7: parse error: escape sequence is an invalid Unicode code point"),
    ("0x", r#"1:1: parse error: error parsing number: strconv.ParseFloat: parsing "0x": invalid syntax"#),
    ("foo offset 1y1x", r#"1:12: parse error: bad number or duration syntax: "1y1""#),
    ("abs(foo,)", "1:8: parse error: trailing commas not allowed in function call args"),
    ("abs(foo, *)", "1:8: parse error: trailing commas not allowed in function call args"),
    ("a + on(b) group_left", "1:21: parse error: unexpected end of input in grouping opts, expected \"(\""),
    (r#"foo{a=~"("}"#, "1:5: parse error: error parsing regexp: missing closing ): `(`"),
    (r#"foo{a="b", c!~"x)"}"#, "1:12: parse error: error parsing regexp: unexpected ): `x)`"),
    (r#"{"a"=~"[z-a]"}"#, "1:2: parse error: error parsing regexp: invalid character class range: `z-a`"),
    (r#"foo{a=~"[ab"}"#, "1:5: parse error: error parsing regexp: missing closing ]: `[ab`"),
    (r#"foo{a=~"*a"}"#, "1:5: parse error: error parsing regexp: missing argument to repetition operator: `*`"),
    (r#"foo{a=~"a\\"}"#, "1:5: parse error: error parsing regexp: trailing backslash at end of expression: ``"),
    (r#"foo{a=~"\\q"}"#, r"1:5: parse error: error parsing regexp: invalid escape sequence: `\q`"),
    ("a + on(b) group_left * c", "1:22: parse error: unexpected <op:*> in grouping opts, expected \"(\""),
];

fn run(cases: &[(&str, &str)], opts: Options) {
    let mut failed = Vec::new();
    for (query, want) in cases {
        let got = describe(query, opts);
        if got.as_deref() != Some(*want) {
            failed.push(format!("{query:?}\n    want {want}\n    got  {got:?}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} cases differ:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

#[test]
fn prometheus_parser_test_expectations() {
    run(PROMETHEUS_CASES, PROMETHEUS_TEST_OPTIONS);
}

#[test]
fn grammar_cases() {
    run(GRAMMAR_CASES, Options::default());
}

#[test]
fn valid_queries_have_no_error() {
    for q in [
        "foo",
        "sum by (a) (rate(foo{b=~\"c.*\"}[5m] offset 1m)) / on(a) group_left bar",
        "topk(3, foo @ start())",
        "foo[5m] @ start() offset 1m",
        "max_over_time(foo[1h:5m])",
        "-1 ^ 2 + fill",
        "foo and on() bar",
        "sum without(and, by, avg, count, alert, annotations)(some_metric) [30m:10s]",
        "{\"foo\", bar=\"baz\",}",
        "foo # comment\n+ bar",
        "label_join(foo, \"a\", \",\", \"b\", \"c\")",
        "a + on(b) group_left c",
        "a + on(b) group_right fill(0) c",
    ] {
        assert_eq!(describe(q, Options::default()), None, "{q}");
    }
}

/// Every query of the conformance scripts that `promql-parser` accepts, Prometheus accepts too.
#[test]
fn no_error_where_promql_parser_accepts() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/promql/testdata"
    );
    let (mut n, mut wrong) = (0, Vec::new());
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines() {
            let l = line.trim();
            let q = if let Some(r) = l.strip_prefix("eval instant at ") {
                r.split_once(' ').map(|x| x.1)
            } else if let Some(r) = l.strip_prefix("eval_fail instant at ") {
                r.split_once(' ').map(|x| x.1)
            } else if let Some(r) = l.strip_prefix("eval range from ") {
                r.split_once(" step ")
                    .and_then(|x| x.1.split_once(' '))
                    .map(|x| x.1)
            } else {
                None
            };
            let Some(q) = q else { continue };
            n += 1;
            if promql_parser::parser::parse(q).is_ok() {
                if let Some(d) = describe(q, Options::default()) {
                    wrong.push(format!("{q}: {d}"));
                }
            }
        }
    }
    assert!(n > 1000, "only {n} queries found in {dir}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
#[test]
/// Arbitrary input never makes the diagnosis panic.
fn never_panics() {
    let alphabet: Vec<char> = "abz_:019.eExp+-*/%^=!~<>()[]{},@\"'`\\# \n\té☺sumbyoffsetstepmax_of"
        .chars()
        .collect();
    let words = [
        "sum",
        "by",
        "offset",
        "@",
        "start()",
        "step()",
        "[5m]",
        "[5m:1m]",
        "{a=\"b\"}",
        "rate(",
        "topk(",
        "on(a)",
        "group_left",
        "bool",
        "fill(0)",
        "max_of(",
        "1e",
        "0x",
        "\"\\",
        "`",
        "=~\"(\"",
        "-",
        "(",
        ")",
    ];
    let mut seed: u64 = 0x1234_5678;
    let mut rnd = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % n
    };
    for _ in 0..50_000 {
        let mut q = String::new();
        for _ in 0..rnd(12) {
            if rnd(3) == 0 {
                q.push_str(words[rnd(words.len())]);
            } else {
                q.push(alphabet[rnd(alphabet.len())]);
            }
        }
        let _ = describe(&q, Options::default());
        let _ = describe(&q, PROMETHEUS_TEST_OPTIONS);
    }
}

/// Deeply nested or very long queries stay within a small thread stack: the diagnosis gives
/// up past its limits (Cairn then reports `promql-parser`'s error).
#[test]
fn deep_queries_stay_within_the_stack() {
    let queries = [
        format!("({}){}", "-{}-1".repeat(10000), "[1m:]".repeat(1000)),
        format!("{}a )", "a + ".repeat(100_000)),
        format!("{}a", "(".repeat(100_000)),
        format!("{}a )", "-".repeat(100_000)),
        format!("{}\"s\"", "a ^ ".repeat(10_000)),
        format!("{}\"s\"", "a + ".repeat(10_000)),
        format!("{}a{}", "rate(".repeat(10_000), "[1m:])".repeat(10_000)),
        format!("{}\"s\"", "a + ".repeat(299)),
    ];
    let found = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            queries
                .iter()
                .map(|q| describe(q, Options::default()).is_some())
                .collect::<Vec<_>>()
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(
        found,
        [false, false, false, false, false, false, false, true]
    );
}
