//! The diagnostic renderer: exact first line, snippet and caret; snapshots of typical errors.

mod common;

use common::error_text;
use convc_lang::*;
use proptest::prelude::*;

fn at(start: usize, end: usize, msg: &str) -> Diagnostic {
    Diagnostic::error(Span::new(start, end), msg)
}

/// The caret line of a rendering: the first line made only of the gutter, spaces and `^`.
fn caret_line(text: &str) -> &str {
    text.lines()
        .find(|l| l.contains('^'))
        .expect("a caret line")
}

#[test]
fn the_example_of_the_brief() {
    let src = "input image: [3, 8, 8]\n\nfeatures = convv(image, out=8)\noutput features\n";
    let start = src.find("convv").unwrap();
    let text = render(
        "model.conv",
        src,
        &at(start, start + 5, "unknown op `convv`"),
    );
    assert_eq!(
        text,
        "model.conv:3:12: error: unknown op `convv`\n  |\n3 | features = convv(image, out=8)\n  |            ^^^^^\n"
    );
}

#[test]
fn notes_follow_the_snippet() {
    let src = "y = conv(x, out=8)\n";
    let d = at(12, 15, "unknown argument `out`")
        .with_note("`conv` takes: out, kernel")
        .with_note("help: did you mean `out`?");
    assert_eq!(
        render("t.conv", src, &d),
        "t.conv:1:13: error: unknown argument `out`\n  |\n1 | y = conv(x, out=8)\n  |             ^^^\n  |\n  = note: `conv` takes: out, kernel\n  = help: did you mean `out`?\n"
    );
}

#[test]
fn control_and_invisible_characters_are_shown_visibly() {
    let src = "y = f(\u{1b}[2J\u{202e}x)\u{0}\n";
    let nul = src.find('\u{0}').unwrap();
    let text = render(
        "t.conv",
        src,
        &at(nul, nul + 1, "unexpected character U+0000"),
    );
    assert_eq!(
        text,
        "t.conv:1:14: error: unexpected character U+0000\n  |\n1 | y = f(?[2J\u{fffd}x)?\n  |              ^\n"
    );
    let text = render("t.conv", "a\rb", &at(1, 2, "m"));
    assert_eq!(text, "t.conv:1:2: error: m\n  |\n1 | a b\n  |  ^\n");
}

#[test]
fn empty_span_gets_one_caret() {
    let text = render("t.conv", "abc def\n", &at(4, 4, "here"));
    assert_eq!(caret_line(&text), "  |     ^");
    assert!(text.starts_with("t.conv:1:5: error: here\n"));
}

#[test]
fn end_of_file_after_a_final_newline() {
    let src = "input x: [1, 2, 2]\n";
    let text = render(
        "t.conv",
        src,
        &at(src.len(), src.len(), "no `output` statement"),
    );
    assert_eq!(
        text,
        "t.conv:2:1: error: no `output` statement\n  |\n2 |\n  | ^\n"
    );
}

#[test]
fn end_of_file_without_a_final_newline() {
    let src = "input x: [1, 2, 2]";
    let text = render(
        "t.conv",
        src,
        &at(src.len(), src.len(), "no `output` statement"),
    );
    assert_eq!(
        text,
        "t.conv:1:19: error: no `output` statement\n  |\n1 | input x: [1, 2, 2]\n  |                   ^\n"
    );
}

#[test]
fn empty_file() {
    let text = render("t.conv", "", &at(0, 0, "the file is empty"));
    assert_eq!(
        text,
        "t.conv:1:1: error: the file is empty\n  |\n1 |\n  | ^\n"
    );
}

#[test]
fn columns_count_characters() {
    let src = "# é\ny = f(\"ü\", bad)\n";
    let start = src.find("bad").unwrap();
    let text = render("t.conv", src, &at(start, start + 3, "m"));
    assert!(text.starts_with("t.conv:2:12: error: m\n"), "{text}");
    assert_eq!(caret_line(&text), "  |            ^^^");
}

#[test]
fn crlf_sources() {
    let src = "a = f(x)\r\nbcd = g(y)\r\n";
    let text = render("t.conv", src, &at(10, 13, "m"));
    assert_eq!(text, "t.conv:2:1: error: m\n  |\n2 | bcd = g(y)\n  | ^^^\n");
    // A span ending with its line's `\r\n` stays on that line.
    let text = render("t.conv", src, &at(10, 22, "m"));
    assert_eq!(caret_line(&text), "  | ^^^^^^^^^^");
}

#[test]
fn wide_line_numbers() {
    let src = "\n".repeat(120) + "y = f(x)\n";
    let text = render("t.conv", &src, &at(124, 125, "m"));
    assert_eq!(
        text,
        "t.conv:121:5: error: m\n    |\n121 | y = f(x)\n    |     ^\n"
    );
}

#[test]
fn spans_out_of_range_or_inside_a_character_do_not_panic() {
    let src = "é = f(x)\n";
    for (s, e) in [
        (1, 1),
        (1, 2),
        (0, 99),
        (99, 99),
        (5, 2),
        (usize::MAX, usize::MAX),
    ] {
        let text = render("t.conv", src, &at(s, e, "m"));
        assert!(text.contains('^'), "{s}..{e}: {text}");
        let (line, col) = line_col(src, s);
        assert!(
            text.starts_with(&format!("t.conv:{line}:{col}: error: m\n")),
            "{s}..{e}: {text}"
        );
    }
}

#[test]
fn multi_line_spans() {
    let src = "y = conv(x, weights=[[1, 2],\n                     [3, 4]])\noutput y\n";
    let start = src.find('[').unwrap();
    let end = src.find("]])").unwrap() + 2;
    let text = render(
        "t.conv",
        src,
        &at(start, end, "expected shape [1, 1, 2, 2], found [2, 2]"),
    );
    insta::assert_snapshot!("multi_line_span", text);
}

// ---- snapshots of parser diagnostics -----------------------------------------------------

#[test]
fn snapshot_unclosed_paren() {
    insta::assert_snapshot!(
        "unclosed_paren",
        error_text("input x: [3, 8, 8]\ny = conv(x, out=8,\n         kernel=3x3\n")
    );
}

#[test]
fn snapshot_missing_paren_before_next_statement() {
    insta::assert_snapshot!(
        "missing_paren_before_next_statement",
        error_text("input x: [3, 8, 8]\ny = conv(x, out=8\nz = relu(y)\noutput z\n")
    );
}

#[test]
fn snapshot_missing_comma_on_a_later_line() {
    insta::assert_snapshot!(
        "missing_comma_on_a_later_line",
        error_text("y = conv(x,\n  out=8\n  kernel=3)\n")
    );
}

#[test]
fn snapshot_positional_after_keyword() {
    insta::assert_snapshot!(
        "positional_after_keyword",
        error_text("input a: [3, 8, 8]\ninput b: [3, 8, 8]\ns = add(a, out=1, b)\n")
    );
}

#[test]
fn snapshot_bad_escape_and_unterminated_string() {
    insta::assert_snapshot!(
        "bad_escape",
        error_text("y = conv(x, out=8, weights=file(\"C:\\weights\\w.npy\"))\n")
    );
    insta::assert_snapshot!(
        "unterminated_string",
        error_text("y = conv(x, weights=file(\"w.npy))\n")
    );
}

#[test]
fn snapshot_numbers() {
    insta::assert_snapshot!("plus_one", error_text("y = clamp(x, max=+1)\n"));
    insta::assert_snapshot!("point_five", error_text("y = leaky_relu(x, alpha=.5)\n"));
}

#[test]
fn snapshot_non_ascii_and_tabs() {
    insta::assert_snapshot!(
        "non_ascii",
        error_text("input x: [3, 8, 8]\n\tfeatüres = relu(x)\n")
    );
}

#[test]
fn snapshot_keyword_and_missing_equals() {
    insta::assert_snapshot!("keyword_layer_name", error_text("input = relu(x)\n"));
    insta::assert_snapshot!("missing_equals", error_text("x: [3, 8, 8]\n"));
    insta::assert_snapshot!("output_trailing_comma", error_text("output a,   # both\n"));
}

#[test]
fn snapshot_nesting() {
    let src = format!("y = f(x, w={}\n", "[".repeat(100));
    insta::assert_snapshot!("nesting", error_text(&src));
}

// ---- properties ----------------------------------------------------------------------------

proptest! {
    /// Whatever the span, the first line is `FILE:LINE:COL: error: MESSAGE` with `line_col`
    /// of the span's start, and there is at least one caret.
    #[test]
    fn first_line_is_line_col(
        src in "[a-z é\\n\\r\\t#()\\[\\]\u{0}\u{1b}\u{7f}\u{85}\u{ad}\u{301}\u{200b}\u{202e}\u{feff}中🙂]{0,40}",
        s in 0usize..50,
        len in 0usize..10,
    ) {
        let d = at(s, s + len, "msg");
        let text = render("f.conv", &src, &d);
        let (line, col) = line_col(&src, s);
        let first = text.lines().next().unwrap();
        prop_assert_eq!(first, format!("f.conv:{line}:{col}: error: msg"));
        prop_assert!(text.lines().skip(1).any(|l| l.contains('^')), "{}", text);
        prop_assert!(text.ends_with('\n'));
    }

    /// On a single line, there is one `^` per character of the span.
    #[test]
    fn one_caret_per_character(line in "[a-zé]{1,30}", s in 0usize..30, len in 1usize..30) {
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        let s = s.min(chars.len() - 1);
        let e = (s + len).min(chars.len());
        let start = chars[s].0;
        let end = chars.get(e).map_or(line.len(), |c| c.0);
        let text = render("f.conv", &line, &at(start, end, "m"));
        let carets = caret_line(&text).matches('^').count();
        prop_assert_eq!(carets, e - s);
    }
}
