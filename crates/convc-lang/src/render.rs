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
    let message = shorten_words(&d.message);
    let notes: Vec<String> = d
        .notes
        .iter()
        .map(|n| {
            let n = shorten_words(n);
            if n.starts_with("note:") || n.starts_with("help:") {
                n
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
        .with_message(message.as_str())
        .with_label(Label::primary((), range.clone()));
    let header = match term::emit_into_string(&config, &files, &short) {
        Ok(s) => s.trim_end_matches('\n').to_string(),
        Err(_) => {
            let (line, col) = line_col(src, range.start);
            format!("{file}:{line}:{col}: error: {message}")
        }
    };

    // The snippet: codespan's rich style without its own `error` and `-->` header lines
    // (rendered under a neutral file name and an empty message, so the header is exactly
    // those two lines whatever the real name and message are).
    config.display_style = DisplayStyle::Rich;
    let (window, range) = window(src, range);
    let shown = visible(&window);
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

/// Lines longer than this many characters are shown as a window around the span.
const MAX_LINE_CHARS: usize = 160;
/// Characters of a long line shown before the span.
const CONTEXT_BEFORE: usize = 40;
/// Words (runs of letters, digits and `_`) longer than this in a message are shortened.
const MAX_WORD_CHARS: usize = 64;

/// A message with every word longer than [`MAX_WORD_CHARS`] cut to its first 32 characters
/// and `...` (a 1 MB name must not make a 1 MB message).
fn shorten_words(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(4096));
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.chars().count() > MAX_WORD_CHARS {
            out.extend(word.chars().take(32));
            out.push_str("...");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in msg.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The text a snippet is drawn from, and the range in it. Normally the source itself; when the
/// span's line is longer than [`MAX_LINE_CHARS`], only a window of that line around the span's
/// start, marked `...` where it is cut, on the same line number (earlier lines are left empty:
/// only the span's line is drawn). A span running past the window is cut at its end.
fn window(src: &str, range: Range<usize>) -> (std::borrow::Cow<'_, str>, Range<usize>) {
    let line_start = src[..range.start].rfind('\n').map_or(0, |p| p + 1);
    let line_end = src[range.start..]
        .find('\n')
        .map_or(src.len(), |p| range.start + p);
    let line = &src[line_start..line_end];
    let line_chars = line.chars().count();
    if line_chars <= MAX_LINE_CHARS {
        return (std::borrow::Cow::Borrowed(src), range);
    }
    let col = src[line_start..range.start].chars().count();
    let width = MAX_LINE_CHARS - 6;
    let first = col.saturating_sub(CONTEXT_BEFORE).min(line_chars - width);
    let last = first + width;
    let byte = |ch: usize| line.char_indices().nth(ch).map_or(line.len(), |(b, _)| b);
    let (ws, we) = (line_start + byte(first), line_start + byte(last));
    let prefix = if first > 0 { "..." } else { "" };
    let suffix = if last < line_chars { "..." } else { "" };
    let line_no = src[..line_start].matches('\n').count();
    let mut text = "\n".repeat(line_no);
    let base = text.len() + prefix.len();
    text.push_str(prefix);
    text.push_str(&src[ws..we]);
    text.push_str(suffix);
    text.push('\n');
    let start = base + (range.start - ws);
    let end = base + (range.end.clamp(range.start, we) - ws);
    (std::borrow::Cow::Owned(text), start..end)
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
    fn long_lines_are_windowed_and_long_words_shortened() {
        let name = "x".repeat(1000);
        let src = format!("input a: [1, 2, 2]\nb = relu({name})  y\noutput b\n");
        let d = Diagnostic::error(Span::new(28, 1028), format!("`{name}` is not defined"));
        let out = render("m.conv", &src, &d);
        assert!(out.len() < 600, "{out}");
        let first = out.lines().next().unwrap();
        assert_eq!(
            first,
            format!("m.conv:2:10: error: `{}...` is not defined", "x".repeat(32))
        );
        assert!(out.contains("2 | b = relu(xxx"), "{out}");
        assert!(out.contains("x...\n"), "{out}");
        // The caret under the token at the end of a long line.
        let d = Diagnostic::error(Span::new(1031, 1032), "expected end of line");
        let out = render("m.conv", &src, &d);
        assert!(
            out.starts_with("m.conv:2:1013: error: expected end of line\n"),
            "{out}"
        );
        let lines: Vec<&str> = out.lines().collect();
        let (text, caret) = (lines[2], lines[3]);
        assert!(text.starts_with("2 | ...") && text.ends_with('y'), "{out}");
        assert_eq!(caret.find('^'), text.find('y'), "{out}");
        assert!(shorten_words("a short message").eq("a short message"));
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
