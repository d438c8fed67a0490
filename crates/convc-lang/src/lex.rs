//! Lexical pieces of the `.conv` language, written with nom: whitespace and comments,
//! identifiers, numbers, sizes and strings, plus the description of "the token found here"
//! used by every `expected X, found Y` diagnostic.

use nom::bytes::complete::take_while;
use nom::character::complete::{char, digit1, one_of, satisfy};
use nom::combinator::{opt, recognize};
use nom::error::{ErrorKind, ParseError};
use nom::{IResult, Parser};

use crate::ast::Span;
use crate::diag::Diagnostic;

/// The error type threaded through the nom parsers.
///
/// A recoverable [`nom::Err::Error`] only says "this alternative does not match here"; every
/// committed syntax error is a [`nom::Err::Failure`] carrying its finished [`Diagnostic`].
#[derive(Debug)]
pub(crate) struct PError {
    /// Remaining input length where the error arose (its offset is `src.len() - rest_len`).
    pub rest_len: usize,
    /// The diagnostic of a committed error.
    pub diag: Option<Diagnostic>,
}

impl<'a> ParseError<&'a str> for PError {
    fn from_error_kind(input: &'a str, _kind: ErrorKind) -> Self {
        PError {
            rest_len: input.len(),
            diag: None,
        }
    }
    fn append(_input: &'a str, _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

/// What every parser of this crate returns.
pub(crate) type PResult<'a, T> = IResult<&'a str, T, PError>;

/// `[A-Za-z_]`
pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// `[A-Za-z0-9_]`
pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Skips blanks (space, tab, carriage return) and a `#` comment, but not a newline:
/// the whitespace between tokens of one statement outside brackets.
pub(crate) fn line_ws(i: &str) -> &str {
    let i = i.trim_start_matches([' ', '\t', '\r']);
    match i.strip_prefix('#') {
        Some(rest) => rest.find('\n').map_or(&rest[rest.len()..], |p| &rest[p..]),
        None => i,
    }
}

/// Skips blanks, newlines and comments: the whitespace inside `(...)` and `[...]`.
pub(crate) fn ws_nl(mut i: &str) -> &str {
    loop {
        i = i.trim_start_matches([' ', '\t', '\r', '\n']);
        match i.strip_prefix('#') {
            Some(rest) => i = rest.find('\n').map_or(&rest[rest.len()..], |p| &rest[p..]),
            None => return i,
        }
    }
}

/// An identifier `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn ident(i: &str) -> PResult<'_, &str> {
    recognize((satisfy(is_ident_start), take_while(is_ident_char))).parse(i)
}

/// A size `DIGITSxDIGITS`, returned as the two digit strings.
pub(crate) fn size(i: &str) -> PResult<'_, (&str, &str)> {
    let (rest, (kh, _, kw)) = (digit1, char('x'), digit1).parse(i)?;
    Ok((rest, (kh, kw)))
}

/// A number `-?DIGITS(.DIGITS)?([eE][+-]?DIGITS)?`, returned as its text.
pub(crate) fn number(i: &str) -> PResult<'_, &str> {
    recognize((opt(char('-')), unsigned)).parse(i)
}

/// A number without its sign: `DIGITS(.DIGITS)?([eE][+-]?DIGITS)?`.
pub(crate) fn unsigned(i: &str) -> PResult<'_, &str> {
    recognize((
        digit1,
        opt((char('.'), digit1)),
        opt((one_of("eE"), opt(one_of("+-")), digit1)),
    ))
    .parse(i)
}

/// The longest prefix that looks like one (possibly malformed) numeric word:
/// `[A-Za-z0-9_.]*`, with a sign allowed right after an exponent letter.
pub(crate) fn numeric_word(i: &str) -> &str {
    let b = i.as_bytes();
    let mut n = 0;
    while n < b.len() {
        let c = b[n];
        let ok = c.is_ascii_alphanumeric()
            || c == b'_'
            || c == b'.'
            || ((c == b'+' || c == b'-') && n > 0 && (b[n - 1] == b'e' || b[n - 1] == b'E'));
        if !ok {
            break;
        }
        n += 1;
    }
    &i[..n]
}

/// Source text shown inside a message, shortened when long.
pub(crate) fn shown(text: &str) -> String {
    const MAX: usize = 32;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}...")
    }
}

/// The token found at some position, for `expected X, found Y` messages.
pub(crate) enum Found {
    /// A token the language knows (or an ASCII punctuation character): its description
    /// (e.g. "`]`", "end of line", "a string") and span.
    Token(String, Span),
    /// A character that may not appear outside strings and comments.
    BadChar(Diagnostic),
}

/// Describes the token that starts at `i`; `before` is the source before it.
pub(crate) fn found(i: &str, before: &str) -> Found {
    let off = before.len();
    let Some(c) = i.chars().next() else {
        let at = end_of_code(before);
        return Found::Token("end of file".into(), Span::new(at, at));
    };
    let tok = |len: usize, desc: String| Found::Token(desc, Span::new(off, off + len));
    match c {
        '\n' => {
            let at = end_of_code(before);
            Found::Token("end of line".into(), Span::new(at, at))
        }
        ' ' | '\t' | '\r' => tok(1, "whitespace".into()),
        '"' => {
            let len = i[1..].find(['"', '\n']).map_or(i.len(), |p| {
                if i.as_bytes()[1 + p] == b'"' {
                    p + 2
                } else {
                    p + 1
                }
            });
            tok(len, "a string".into())
        }
        c if is_ident_start(c) => {
            let len = i.find(|c: char| !is_ident_char(c)).unwrap_or(i.len());
            tok(len, format!("`{}`", shown(&i[..len])))
        }
        c if c.is_ascii_digit()
            || (c == '-' && i[1..].starts_with(|c: char| c.is_ascii_digit())) =>
        {
            let len = 1 + numeric_word(&i[1..]).len();
            tok(len, format!("`{}`", shown(&i[..len])))
        }
        c if c.is_ascii_graphic() => tok(1, format!("`{c}`")),
        c => Found::BadChar(bad_char(c, off)),
    }
}

/// Where a missing token at the end of the last line of `before` is reported: just after
/// the last character of code on that line (before trailing blanks and a comment), so the
/// caret sits right after the token that wants a successor.
fn end_of_code(before: &str) -> usize {
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let line = &before[line_start..];
    // A string never spans lines, so scanning from the start of the line tells a `#` in a
    // string from the start of a comment.
    let mut in_string = false;
    let mut escaped = false;
    let mut code_end = line.len();
    for (p, c) in line.char_indices() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_string = false,
            (false, '"') => in_string = true,
            (false, '#') => {
                code_end = p;
                break;
            }
            _ => {}
        }
    }
    line_start + line[..code_end].trim_end_matches([' ', '\t', '\r']).len()
}

/// "unexpected character" for a character outside the language's alphabet.
pub(crate) fn bad_char(c: char, off: usize) -> Diagnostic {
    let span = Span::new(off, off + c.len_utf8());
    if c.is_control() || c.is_whitespace() || c == '\u{feff}' || c == '\u{200b}' {
        Diagnostic::error(span, format!("unexpected character U+{:04X}", c as u32)).with_note(
            "outside strings and comments, only ASCII letters, digits, punctuation, spaces and tabs are allowed",
        )
    } else {
        Diagnostic::error(span, format!("unexpected character `{c}`")).with_note(
            "outside strings and comments, only ASCII is allowed: names are `[A-Za-z_][A-Za-z0-9_]*`",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_and_comments() {
        assert_eq!(line_ws("  \t# hi\nx"), "\nx");
        assert_eq!(line_ws(" \r\nx"), "\nx");
        assert_eq!(line_ws("# to the end"), "");
        assert_eq!(ws_nl(" # a\n  # b\r\n\tx # c"), "x # c");
        assert_eq!(ws_nl("# only"), "");
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(number("-12.5e+3,").unwrap(), (",", "-12.5e+3"));
        assert_eq!(number("1.x").unwrap(), (".x", "1"));
        assert_eq!(number("1e").unwrap(), ("e", "1"));
        assert!(number("-x").is_err());
        assert_eq!(size("3x4)").unwrap(), (")", ("3", "4")));
        assert!(size("3xa").is_err());
        assert_eq!(numeric_word("1e+5x,"), "1e+5x");
        assert_eq!(numeric_word("3abc.d)"), "3abc.d");
    }

    #[test]
    fn identifiers() {
        assert_eq!(ident("_a1 b").unwrap(), (" b", "_a1"));
        assert!(ident("1a").is_err());
        assert!(ident("é").is_err());
    }

    #[test]
    fn found_tokens() {
        let desc = |s: &str| match found(s, "") {
            Found::Token(d, span) => (d, span.end),
            Found::BadChar(d) => (d.message, d.span.end),
        };
        assert_eq!(desc(""), ("end of file".into(), 0));
        assert_eq!(desc("\nx"), ("end of line".into(), 0));
        assert_eq!(desc("abc d"), ("`abc`".into(), 3));
        assert_eq!(desc("-3x3,"), ("`-3x3`".into(), 4));
        assert_eq!(desc("\"ab\" c"), ("a string".into(), 4));
        assert_eq!(desc("\"ab\nc"), ("a string".into(), 3));
        assert_eq!(desc("]"), ("`]`".into(), 1));
        assert_eq!(desc("é"), ("unexpected character `é`".into(), 2));
        assert_eq!(desc("\u{0}"), ("unexpected character U+0000".into(), 1));
        assert_eq!(desc("\u{a0}"), ("unexpected character U+00A0".into(), 2));
        let eol = |before: &str| match found("\n", before) {
            Found::Token(_, span) => span.start,
            Found::BadChar(_) => unreachable!(),
        };
        assert_eq!(eol("x\noutput a,  # c\"#\r"), 11);
        assert_eq!(eol("y = f(\"#\\\"#\") # c"), 13);
        assert_eq!(eol("input\r"), 5);
        assert_eq!(eol(""), 0);
        assert_eq!(shown(&"a".repeat(40)), format!("{}...", "a".repeat(32)));
    }
}
