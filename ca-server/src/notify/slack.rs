//! The Slack text of a request event. Everything a person wrote (reason,
//! usernames, hosts) is cut to a budget, folded onto one line and escaped for
//! Slack's mrkdwn, so it can neither forge a line that looks like TPA's own
//! nor make a message larger than [`MAX_TEXT`] bytes.

use tpa_core::api::{RequestView, WebhookEvent};

/// Characters of the reason shown; the request page has all of it.
const REASON_CHARS: usize = 300;
/// Characters of a name (the requester, the role, a group) shown.
const NAME_CHARS: usize = 64;
/// Characters of the host list shown.
const HOSTS_CHARS: usize = 200;
/// An upper bound of [`slack_text`]'s length in bytes: every shown character
/// escapes to at most 5 bytes (`&amp;`), the rest is TPA's own words.
pub const MAX_TEXT: usize = 4096;

/// Escapes user text for mrkdwn, keeping at most `max_chars` characters.
/// `&`, `<` and `>` become entities (Slack's rule for its control
/// characters, which also stops `<!channel>` mentions and `<url|label>`
/// links); the markers `*`, `_`, `~` and `` ` `` become look-alike
/// characters that Slack does not format; line feeds fold into ` ⏎ `
/// (so no user text starts a line, and no `>` quote can begin); any
/// character the free-text rule forbids becomes U+FFFD.
pub fn mrkdwn(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 5));
    for c in text.chars().take(max_chars) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' => out.push('\u{2217}'),
            '_' => out.push('\u{02CD}'),
            '~' => out.push('\u{223C}'),
            '`' => out.push('\u{02CB}'),
            '\n' => out.push_str(" \u{23CE} "),
            c if tpa_core::text::forbidden(c, false).is_some() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// The Slack text for an event: one line, TPA's own words in bold, user
/// text escaped by [`mrkdwn`], at most [`MAX_TEXT`] bytes.
pub fn slack_text(event: &WebhookEvent) -> String {
    let r: &RequestView = &event.request;
    let who = r
        .requester
        .username
        .as_deref()
        .unwrap_or(&r.requester.subject);
    let verb = match event.event.as_str() {
        "request.created" => "requests",
        "request.approved" => "was approved for",
        "request.denied" => "was denied",
        "request.expired" => "request expired for",
        "request.cancelled" => "cancelled",
        "request.revoked" => "lost (revoked)",
        "request.break_glass" => ":rotating_light: BREAK-GLASS self-approved",
        other => other,
    };
    let needed = r
        .still_needed
        .as_ref()
        .map(|n| {
            format!(
                " — needs {} approval(s) from {}",
                n.approvals,
                mrkdwn(&n.group, NAME_CHARS)
            )
        })
        .unwrap_or_default();
    let text = format!(
        "*{}* {} *{}* on {} for {} ({}){} — reason: {}",
        mrkdwn(who, NAME_CHARS),
        mrkdwn(verb, NAME_CHARS),
        mrkdwn(&r.role, NAME_CHARS),
        mrkdwn(&r.hosts.join(", "), HOSTS_CHARS),
        mrkdwn(&r.duration, NAME_CHARS),
        mrkdwn(&r.id, NAME_CHARS),
        needed,
        mrkdwn(&r.reason, REASON_CHARS)
    );
    bounded(text)
}

/// `text` cut to at most [`MAX_TEXT`] bytes (on a character boundary, then
/// `…`). The budgets above keep ordinary messages well below; this is the
/// guarantee for any input.
fn bounded(mut text: String) -> String {
    if text.len() <= MAX_TEXT {
        return text;
    }
    let mut end = MAX_TEXT - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_slack_controls_are_escaped_and_lines_folded() {
        // issue 11
        assert_eq!(
            mrkdwn("x\n*bob* was _approved_ ~for~ `root` <!channel> & >q", 100),
            "x \u{23CE} \u{2217}bob\u{2217} was \u{02CD}approved\u{02CD} \u{223C}for\u{223C} \
             \u{02CB}root\u{02CB} &lt;!channel&gt; &amp; &gt;q"
        );
        assert_eq!(mrkdwn("\u{1b}[2J\u{202e}", 100), "\u{FFFD}[2J\u{FFFD}");
        assert_eq!(mrkdwn(&"&".repeat(10), 3), "&amp;&amp;&amp;…");
    }

    #[test]
    fn no_input_makes_a_text_longer_than_the_bound() {
        // issue 11: every field at its worst (5 bytes per character shown).
        let worst = "&\n".repeat(2000);
        assert_eq!(mrkdwn(&worst, REASON_CHARS).len(), REASON_CHARS * 5 + 3);
        let long = bounded("é".repeat(MAX_TEXT));
        assert!(
            long.len() <= MAX_TEXT && long.ends_with('…'),
            "{}",
            long.len()
        );
        assert_eq!(bounded("short".to_owned()), "short");
    }
}
