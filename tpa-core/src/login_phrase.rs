//! The confirmation phrase of a loopback `tpa-ssh login`: four short words
//! derived from the CLI's PKCE `code_challenge`. The CLI prints it and the
//! CA's consent page shows it, so the person can check that the page they
//! approve belongs to the login in their own terminal (issue 18). One rule
//! here, used by both, so the two can never disagree.

use sha2::{Digest as _, Sha256};

/// 64 short, distinct, easily read words: 6 bits each.
const WORDS: [&str; 64] = [
    "amber", "anchor", "apple", "arrow", "badge", "basil", "beach", "berry", "birch", "bison",
    "blade", "bloom", "brick", "brook", "cabin", "camel", "candle", "canoe", "cedar", "chalk",
    "cherry", "cloud", "clover", "cobalt", "comet", "coral", "cotton", "crane", "daisy", "delta",
    "dune", "eagle", "ember", "fern", "flint", "forest", "fossil", "garnet", "glacier", "granite",
    "harbor", "hazel", "heron", "island", "ivory", "jasper", "kettle", "lagoon", "lantern",
    "lemon", "lotus", "maple", "meadow", "marble", "nectar", "olive", "orbit", "otter", "pebble",
    "pepper", "quartz", "raven", "saddle", "walnut",
];

/// Words in a phrase: 24 bits, enough to tell two logins apart at a glance.
const PHRASE_WORDS: usize = 4;

/// The phrase for `code_challenge`, e.g. `maple-otter-flint-cabin`.
pub fn login_phrase(code_challenge: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"tpa-login-phrase v1\n");
    hasher.update(code_challenge.as_bytes());
    let digest = hasher.finalize();
    digest
        .iter()
        .take(PHRASE_WORDS)
        .map(|b| WORDS[usize::from(*b) % WORDS.len()])
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phrase_is_stable_short_and_depends_on_the_challenge() {
        let a = login_phrase("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(
            a,
            login_phrase("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        );
        assert_eq!(a.split('-').count(), 4, "{a}");
        assert!(a.split('-').all(|w| WORDS.contains(&w)), "{a}");
        assert_ne!(
            a,
            login_phrase("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN")
        );
    }

    #[test]
    fn the_words_are_distinct() {
        let mut sorted = WORDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), WORDS.len());
    }
}
