//! The free-text rule: table of refused characters, normalization, lengths,
//! and a property test that nothing forbidden survives.

use proptest::prelude::*;
use unicode_normalization::is_nfc;

use super::*;

// issue 11: every character the adversarial pass used, and their relatives,
// is refused in every field with the field's stable code.
#[test]
fn control_format_and_bidi_characters_are_refused_in_every_field() {
    let cases: &[(char, Forbidden)] = &[
        ('\u{202E}', Forbidden::Format), // right-to-left override
        ('\u{202A}', Forbidden::Format),
        ('\u{2066}', Forbidden::Format), // left-to-right isolate
        ('\u{2067}', Forbidden::Format),
        ('\u{2068}', Forbidden::Format),
        ('\u{2069}', Forbidden::Format), // pop directional isolate
        ('\u{200B}', Forbidden::Format), // zero-width space
        ('\u{200F}', Forbidden::Format), // right-to-left mark
        ('\u{FEFF}', Forbidden::Format),
        ('\u{2028}', Forbidden::Format), // line separator
        ('\u{2029}', Forbidden::Format),
        ('\u{1B}', Forbidden::Control), // ESC
        ('\u{0}', Forbidden::Control),
        ('\r', Forbidden::Control),
        ('\u{7}', Forbidden::Control), // BEL
        ('\t', Forbidden::Control),
        ('\u{7F}', Forbidden::Control),
        ('\u{9B}', Forbidden::Control), // C1 CSI
        ('\u{E000}', Forbidden::Unassigned),
        ('\u{FFFF}', Forbidden::Unassigned),
    ];
    let fields = [
        (TextField::Reason, "bad_reason"),
        (TextField::Ticket, "bad_ticket"),
        (TextField::Comment, "bad_comment"),
        (TextField::ShortReason, "bad_reason"),
    ];
    for &(ch, kind) in cases {
        for (field, code) in fields {
            let input = format!("INC-1{ch}x");
            let err = FreeText::parse(field, &input).unwrap_err();
            assert_eq!(
                err,
                TextError::Forbidden {
                    field,
                    kind,
                    ch,
                    position: 6
                },
                "U+{:04X} in {field:?}",
                u32::from(ch)
            );
            assert_eq!(err.code(), code);
            let message = err.to_string();
            assert!(
                !message.contains(ch),
                "the message never carries the character: {message:?}"
            );
            assert!(
                message.contains(&format!("U+{:04X}", u32::from(ch))),
                "{message}"
            );
        }
    }
}

#[test]
fn line_feeds_span_lines_only_where_the_field_allows() {
    let two = "disk full\nsee INC-1";
    assert_eq!(
        FreeText::parse(TextField::Reason, two).unwrap().as_str(),
        two
    );
    assert_eq!(
        FreeText::parse(TextField::Comment, two).unwrap().as_str(),
        two
    );
    for field in [TextField::Ticket, TextField::ShortReason] {
        let err = FreeText::parse(field, two).unwrap_err();
        assert!(matches!(
            err,
            TextError::Forbidden {
                kind: Forbidden::LineBreak,
                position: 10,
                ..
            }
        ));
        assert!(err.to_string().contains("bytes on one line"), "{err}");
    }
    // A CRLF pair is a CR: refused (the web forms turn CRLF into LF first).
    assert!(FreeText::parse(TextField::Reason, "a\r\nb").is_err());
}

#[test]
fn text_is_nfc_normalized_and_trimmed() {
    let decomposed = "  cafe\u{301} down \n";
    let text = FreeText::parse(TextField::Reason, decomposed).unwrap();
    assert_eq!(text.as_str(), "caf\u{E9} down");
    assert_eq!(text.field(), TextField::Reason);
    assert!(
        FreeText::parse(TextField::Reason, " \n ")
            .unwrap()
            .is_empty()
    );
    // Ordinary non-ASCII text and emoji are fine.
    for fine in [
        "Störung im Rechenzentrum",
        "障害対応",
        "🔥 db-1 on fire",
        "a*b_c~d`e>f&<",
    ] {
        assert_eq!(
            FreeText::parse(TextField::Reason, fine).unwrap().as_str(),
            fine
        );
    }
}

#[test]
fn length_is_capped_per_field_after_normalization() {
    for field in [
        TextField::Reason,
        TextField::Ticket,
        TextField::Comment,
        TextField::ShortReason,
    ] {
        let max = field.max_bytes();
        assert!(FreeText::parse(field, &"a".repeat(max)).is_ok());
        let err = FreeText::parse(field, &"a".repeat(max + 1)).unwrap_err();
        assert_eq!(
            err,
            TextError::TooLong {
                field,
                len: max + 1,
                max
            }
        );
        assert!(FreeText::parse(field, &"a".repeat(max * 10)).is_err());
    }
    // 2000 bytes of "e" + combining acute (3 bytes each) normalize to 2 bytes each.
    let composed = "e\u{301}".repeat(MAX_REASON / 2);
    assert_eq!(
        FreeText::parse(TextField::Reason, &composed)
            .unwrap()
            .as_str()
            .len(),
        MAX_REASON
    );
}

#[test]
fn printable_replaces_what_the_rule_forbids() {
    let hostile = "\u{1b}]0;pwned\u{7}\u{1b}[2J ok \u{202E}txt.exe\nnext";
    assert_eq!(
        printable(hostile, false, 100),
        "\u{FFFD}]0;pwned\u{FFFD}\u{FFFD}[2J ok \u{FFFD}txt.exe\u{FFFD}next"
    );
    assert_eq!(printable("a\nb", true, 100), "a\nb");
    assert_eq!(printable("abcdef", false, 3), "abc");
}

proptest! {
    #[test]
    fn parsed_text_holds_nothing_forbidden(input in "\\PC*|[\\x00-\\x1f\u{200b}-\u{200f}\u{202a}-\u{202e}\u{2066}-\u{2069}a-z\\n ]{0,40}") {
        for field in [TextField::Reason, TextField::Ticket] {
            if let Ok(text) = FreeText::parse(field, &input) {
                prop_assert!(text.as_str().chars().all(|c| forbidden(c, field.multiline()).is_none()));
                prop_assert!(is_nfc(text.as_str()));
                prop_assert!(text.as_str().len() <= field.max_bytes());
                // Parsing is idempotent.
                prop_assert_eq!(FreeText::parse(field, text.as_str()).unwrap(), text.clone());
            }
        }
    }
}
