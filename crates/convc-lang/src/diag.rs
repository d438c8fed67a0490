//! Located diagnostics: `FILE:LINE:COL: error: MESSAGE`, the source line, a caret.

use crate::ast::Span;

/// One error with the span of the token at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// The message, without location or `error:` prefix.
    pub message: String,
    /// The token at fault.
    pub span: Span,
    /// Extra lines shown after the snippet (`= note: ...`).
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
            notes: Vec::new(),
        }
    }
    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
}
