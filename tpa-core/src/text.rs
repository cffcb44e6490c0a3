//! Free text written by people (reasons, tickets, incident ids, decision and
//! review comments): one type, [`FreeText`], and one character rule shared by
//! every program, so that what a person typed can be shown on a terminal, a
//! web page, in Slack or in the audit trail without rewriting or hiding
//! anything around it.
//!
//! The rule: NFC-normalized, trimmed, at most the field's length in bytes, and
//! none of the characters that change how text around them is displayed: no
//! control characters (Unicode `Cc`: ESC, NUL, CR, BEL, …; a line feed only in
//! the fields that may span lines), no format characters (`Cf`: the bidi
//! overrides and isolates U+202A–202E and U+2066–2069, zero-width U+200B–200F,
//! soft hyphen, …), no line or paragraph separators (`Zl`, `Zp`), no private-use
//! and no unassigned code points.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Which human-written field a text is; each has its length and line rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextField {
    /// Why access is requested: several lines, at most [`MAX_REASON`] bytes.
    Reason,
    /// A ticket or incident id: one line, at most [`MAX_TICKET`] bytes.
    Ticket,
    /// An approver's, reviewer's or revoker's comment: several lines, at most
    /// [`MAX_COMMENT`] bytes.
    Comment,
    /// Why an operator revokes or issues by hand (`tpa-ca revoke`, `tpa-ca
    /// issue`, `POST /api/v1/revocations`): one line, at most
    /// [`MAX_SHORT_REASON`] bytes.
    ShortReason,
}

/// The longest request reason, in bytes.
pub const MAX_REASON: usize = 2000;
/// The longest ticket or incident id, in bytes.
pub const MAX_TICKET: usize = 128;
/// The longest comment, in bytes.
pub const MAX_COMMENT: usize = 2000;
/// The longest one-line operator reason, in bytes.
pub const MAX_SHORT_REASON: usize = 1024;

impl TextField {
    /// The longest text accepted, in bytes (after normalization and trimming).
    pub fn max_bytes(self) -> usize {
        match self {
            TextField::Reason => MAX_REASON,
            TextField::Ticket => MAX_TICKET,
            TextField::Comment => MAX_COMMENT,
            TextField::ShortReason => MAX_SHORT_REASON,
        }
    }

    /// Whether a line feed (U+000A) may separate lines.
    pub fn multiline(self) -> bool {
        matches!(self, TextField::Reason | TextField::Comment)
    }

    /// The stable API error code of a refused text in this field.
    pub fn code(self) -> &'static str {
        match self {
            TextField::Reason | TextField::ShortReason => "bad_reason",
            TextField::Ticket => "bad_ticket",
            TextField::Comment => "bad_comment",
        }
    }

    /// The rule in words, for messages.
    fn rule(self) -> String {
        let lines = if self.multiline() {
            " (line breaks are fine)"
        } else {
            " on one line"
        };
        format!(
            "at most {} bytes{lines}, without control, format or bidi characters",
            self.max_bytes()
        )
    }

    fn name(self) -> &'static str {
        match self {
            TextField::Reason | TextField::ShortReason => "reason",
            TextField::Ticket => "ticket",
            TextField::Comment => "comment",
        }
    }
}

impl fmt::Display for TextField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A kind of character that free text never holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// A line feed in a one-line field.
    LineBreak,
    /// `Cc`: ESC, NUL, CR, BEL, TAB, DEL, the C1 controls.
    Control,
    /// `Cf`, `Zl`, `Zp`: invisible characters and those that reorder text
    /// (bidi overrides and isolates, zero-width spaces and joiners).
    Format,
    /// `Co`, `Cn`, `Cs`: private-use, unassigned or noncharacter code points.
    Unassigned,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forbidden::LineBreak => "a line break",
            Forbidden::Control => "a control character",
            Forbidden::Format => "an invisible or text-direction (format) character",
            Forbidden::Unassigned => "a private-use or unassigned character",
        })
    }
}

/// Why a text was refused. The message names the character by code point,
/// never by itself, so that it is safe to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Longer than the field allows.
    #[error("the {field} is {len} bytes long; it must be {rule}", rule = field.rule())]
    TooLong {
        /// The field.
        field: TextField,
        /// The length given, in bytes.
        len: usize,
        /// The field's maximum.
        max: usize,
    },
    /// A character the rule refuses.
    #[error(
        "the {field} contains {kind} (U+{code_point:04X}) at character {position}; remove it: \
         the {field} must be {rule}",
        code_point = u32::from(*ch),
        rule = field.rule()
    )]
    Forbidden {
        /// The field.
        field: TextField,
        /// What kind of character.
        kind: Forbidden,
        /// The character.
        ch: char,
        /// Its position, counting characters from 1.
        position: usize,
    },
}

impl TextError {
    /// The stable API error code (`bad_reason`, `bad_ticket`, `bad_comment`).
    pub fn code(&self) -> &'static str {
        match self {
            TextError::TooLong { field, .. } | TextError::Forbidden { field, .. } => field.code(),
        }
    }
}

/// What the rule says about one character: `None` when free text may hold
/// it. A line feed is allowed only when `multiline`.
pub fn forbidden(c: char, multiline: bool) -> Option<Forbidden> {
    if c == '\n' {
        return (!multiline).then_some(Forbidden::LineBreak);
    }
    match c.general_category() {
        GeneralCategory::Control => Some(Forbidden::Control),
        GeneralCategory::Format
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator => Some(Forbidden::Format),
        GeneralCategory::PrivateUse | GeneralCategory::Unassigned | GeneralCategory::Surrogate => {
            Some(Forbidden::Unassigned)
        }
        _ => None,
    }
}

/// Human-written text that passed the rule of its field. Built only by
/// [`FreeText::parse`]; holding one means it is NFC, trimmed, within its
/// length and free of control, format and unassigned characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FreeText {
    field: TextField,
    text: String,
}

impl FreeText {
    /// Normalizes (NFC), trims and checks `input` for `field`. Empty text is
    /// allowed here; whether a field is required is the caller's rule.
    pub fn parse(field: TextField, input: &str) -> Result<Self, TextError> {
        let max = field.max_bytes();
        // NFC at most triples a text's length and a few characters compose
        // four into one: anything longer cannot fit once normalized.
        if input.len() > max.saturating_mul(4) {
            return Err(TextError::TooLong {
                field,
                len: input.len(),
                max,
            });
        }
        let normalized: String = input.nfc().collect();
        let text = normalized.trim();
        let first_forbidden = text
            .chars()
            .enumerate()
            .find_map(|(i, c)| forbidden(c, field.multiline()).map(|kind| (i + 1, c, kind)));
        if let Some((position, ch, kind)) = first_forbidden {
            return Err(TextError::Forbidden {
                field,
                kind,
                ch,
                position,
            });
        }
        if text.len() > max {
            return Err(TextError::TooLong {
                field,
                len: text.len(),
                max,
            });
        }
        Ok(Self {
            field,
            text: text.to_owned(),
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The field it was checked for.
    pub fn field(&self) -> TextField {
        self.field
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.text
    }
}

impl fmt::Display for FreeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Text from elsewhere (a server's message, a refused input) made safe to
/// print or store: every character the rule forbids becomes U+FFFD (line
/// feeds too, unless `multiline`), and only the first `max_chars` characters
/// are kept. For text that cannot be refused, only shown.
pub fn printable(text: &str, multiline: bool, max_chars: usize) -> String {
    text.chars()
        .take(max_chars)
        .map(|c| {
            if forbidden(c, multiline).is_some() {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
