//! Rendering of diagnostics with codespan-reporting: the `FILE:LINE:COL: error: MESSAGE`
//! line (codespan's short style), then codespan's source snippet with a caret (ASCII, no colour).

use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Chars, Config, DisplayStyle};

use crate::diag::Diagnostic;

/// 1-based (line, column) of a byte offset; the column counts characters.
pub fn line_col(src: &str, byte: usize) -> (usize, usize) {
    let byte = byte.min(src.len());
    let before = &src[..src.floor_char_boundary(byte)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Renders a diagnostic: `FILE:LINE:COL: error: MESSAGE`, the source line, a caret.
///
/// ```text
/// model.conv:3:12: error: unknown op `convv`
///   |
/// 3 | features = convv(image, out=8)
///   |            ^^^^^
///   = note: ...
/// ```
///
/// LINE and COL are those of [`line_col`] at the span's start. The caret line has one `^` per
/// character of the span on its line (one `^` for an empty span, e.g. at the end of the file);
/// a span over several lines is drawn as codespan's multi-line label. Each note is shown as
/// `= note: NOTE` (a note already starting with `note:` or `help:` is shown as it is).
/// The result ends with a newline. Any span is accepted: it is clamped to the source and to
/// character boundaries.
pub fn render(file: &str, src: &str, d: &Diagnostic) -> String {
    let range = clamp(src, d.span.start, d.span.end);
    let notes: Vec<String> = d
        .notes
        .iter()
        .map(|n| {
            if n.starts_with("note:") || n.starts_with("help:") {
                n.clone()
            } else {
                format!("note: {n}")
            }
        })
        .collect();

    let mut config = Config {
        chars: Chars::ascii(),
        ..Config::default()
    };

    // The first line: codespan's short style.
    config.display_style = DisplayStyle::Short;
    let files = SimpleFile::new(file, src);
    let short = CsDiagnostic::error()
        .with_message(d.message.as_str())
        .with_label(Label::primary((), range.clone()));
    let header = match term::emit_into_string(&config, &files, &short) {
        Ok(s) => s.trim_end_matches('\n').to_string(),
        Err(_) => {
            let (line, col) = line_col(src, range.start);
            format!("{file}:{line}:{col}: error: {}", d.message)
        }
    };

    // The snippet: codespan's rich style without its own `error` and `-->` header lines
    // (rendered under a neutral file name and an empty message, so the header is exactly
    // those two lines whatever the real name and message are).
    config.display_style = DisplayStyle::Rich;
    let shown = visible(src);
    let files = SimpleFile::new("-", shown.as_str());
    let rich = CsDiagnostic::error()
        .with_label(Label::primary((), range.clone()))
        .with_notes(notes.clone());
    let snippet = match term::emit_into_string(&config, &files, &rich) {
        Ok(s) => {
            let mut lines = s.lines();
            let found_arrow = lines.by_ref().any(|l| l.trim_start().starts_with("-->"));
            if found_arrow {
                lines.map(|l| l.trim_end().to_string()).collect::<Vec<_>>()
            } else {
                Vec::new()
            }
        }
        Err(_) => Vec::new(),
    };

    let mut out = header;
    out.push('\n');
    if !snippet.iter().any(|l| l.contains('^')) {
        // Codespan could not draw the snippet (it never failed in tests): draw it by hand.
        out.push_str(&plain_snippet(&shown, range));
        for n in &notes {
            out.push_str(&format!("  = {n}\n"));
        }
        return out;
    }
    let mut snippet = snippet;
    while snippet
        .last()
        .is_some_and(|l| l.trim().is_empty() || l.trim() == "|")
    {
        snippet.pop();
    }
    for line in snippet {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The source as shown in a snippet: every character that would not show as itself on a
/// terminal (control characters, a lone carriage return, invisible format and bidi-control
/// characters) is replaced by a visible one of the same UTF-8 length, so byte offsets,
/// character counts and the caret's place stay right.
fn visible(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        let r = match c {
            '\t' | '\n' => c,
            '\r' if chars.peek() == Some(&'\n') => c,
            '\r' => ' ',
            c if c.is_ascii_control() => '?',
            '\u{80}'..='\u{9f}' | '\u{ad}' => '\u{b7}',
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}' => '\u{fffd}',
            c => c,
        };
        debug_assert_eq!(r.len_utf8(), c.len_utf8());
        out.push(r);
    }
    out
}

/// A hand-drawn snippet of the span's first line (a fallback that never happens in practice).
fn plain_snippet(src: &str, range: Range<usize>) -> String {
    let (line, col) = line_col(src, range.start);
    let line_start = src[..range.start].rfind('\n').map_or(0, |p| p + 1);
    let line_end = src[range.start..]
        .find('\n')
        .map_or(src.len(), |p| range.start + p);
    let text = src[line_start..line_end]
        .trim_end_matches('\r')
        .replace('\t', " ");
    let carets = src[range.start..range.end.min(line_end)]
        .chars()
        .count()
        .max(1);
    let gutter = " ".repeat(line.to_string().len());
    format!(
        "{gutter} |\n{line} | {text}\n{gutter} | {}{}\n",
        " ".repeat(col - 1),
        "^".repeat(carets)
    )
}

/// The byte range to draw: inside the source, on character boundaries, `start <= end`, and
/// without a trailing line break (so a span ending with its line stays on that line).
fn clamp(src: &str, start: usize, end: usize) -> Range<usize> {
    let start = src.floor_char_boundary(start.min(src.len()));
    let mut end = src.ceil_char_boundary(end.clamp(start, src.len()));
    while end > start && matches!(src.as_bytes()[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Span;

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("ab\n", 3), (2, 1));
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn clamps_spans() {
        assert_eq!(clamp("abc\n", 1, 4), 1..3);
        assert_eq!(clamp("abc\r\n", 0, 5), 0..3);
        assert_eq!(clamp("é", 1, 1), 0..2);
        assert_eq!(clamp("é", 0, 1), 0..2);
        assert_eq!(clamp("abc", 5, 2), 3..3);
        assert_eq!(clamp("abc", 2, 1), 2..2);
    }

    #[test]
    fn visible_keeps_offsets() {
        let src = "a\rb\r\n\u{0}\u{1b}[31m\u{feff}\u{202e}\u{85}\té";
        let v = visible(src);
        assert_eq!(v, "a b\r\n??[31m\u{fffd}\u{fffd}\u{b7}\té");
        assert_eq!(v.len(), src.len());
        assert_eq!(v.chars().count(), src.chars().count());
    }

    #[test]
    fn plain_snippet_draws_a_caret() {
        assert_eq!(
            plain_snippet("ab\n\tcd e\r\n", 4..6),
            "  |\n2 |  cd e\n  |  ^^\n"
        );
        assert_eq!(plain_snippet("", 0..0), "  |\n1 | \n  | ^\n");
    }

    #[test]
    fn renders_the_example() {
        let src = "input image: [3, 8, 8]\n\nfeatures = convv(image, out=8)\n";
        let d = Diagnostic::error(Span::new(35, 40), "unknown op `convv`");
        assert_eq!(
            render("model.conv", src, &d),
            "model.conv:3:12: error: unknown op `convv`\n  |\n3 | features = convv(image, out=8)\n  |            ^^^^^\n"
        );
    }
}
