//! Human durations as users type them: `90s`, `10m`, `2h`, `1h30m`, `1d`.

use std::fmt;
use std::time::Duration;

/// The longest duration TPA accepts anywhere (one year). Longer values are
/// always a typo or an attempt to mint standing access.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty, signed, or not of the form `<number><unit>…`.
    #[error(
        "duration {0} is not valid: use a positive number followed by s, m, h or d, e.g. 90s, 10m, 2h or 1h30m"
    )]
    Malformed(String),
    /// The duration is zero.
    #[error("duration {0} is zero; it must be positive")]
    Zero(String),
    /// Longer than [`MAX_DURATION`].
    #[error("duration {0} is longer than one year")]
    TooLong(String),
}

/// A positive duration of whole seconds, at most [`MAX_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(Duration);

impl HumanDuration {
    /// Parses `<number><unit>` groups, units `s`, `m`, `h`, `d`, largest first.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let shown = crate::identifiers::shown(text);
        let malformed = || DurationError::Malformed(shown.clone());
        if text.is_empty() || text.len() > 32 {
            return Err(malformed());
        }
        let mut total: u64 = 0;
        let mut number: Option<u64> = None;
        let mut last_unit = u64::MAX;
        for b in text.bytes() {
            match b {
                b'0'..=b'9' => {
                    let digit = u64::from(b - b'0');
                    let n = number
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(digit));
                    number = Some(n.ok_or_else(|| DurationError::TooLong(shown.clone()))?);
                }
                b's' | b'm' | b'h' | b'd' => {
                    let unit = match b {
                        b's' => 1,
                        b'm' => 60,
                        b'h' => 3600,
                        _ => 86_400,
                    };
                    // Each unit at most once, largest first: "1h30m", never "30m1h".
                    if unit >= last_unit {
                        return Err(malformed());
                    }
                    last_unit = unit;
                    let n = number.take().ok_or_else(malformed)?;
                    total = n
                        .checked_mul(unit)
                        .and_then(|v| total.checked_add(v))
                        .ok_or_else(|| DurationError::TooLong(shown.clone()))?;
                }
                _ => return Err(malformed()),
            }
        }
        if number.is_some() {
            return Err(malformed());
        }
        if total == 0 {
            return Err(DurationError::Zero(shown));
        }
        let duration = Duration::from_secs(total);
        if duration > MAX_DURATION {
            return Err(DurationError::TooLong(shown));
        }
        Ok(Self(duration))
    }

    /// Wraps a whole number of seconds (positive, at most one year).
    pub fn from_secs(secs: u64) -> Result<Self, DurationError> {
        Self::parse(&format!("{secs}s"))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for HumanDuration {
    /// Formats in the same grammar `parse` accepts, e.g. `1h30m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_secs();
        for (unit, suffix) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
            if rest >= unit {
                write!(f, "{}{suffix}", rest / unit)?;
                rest %= unit;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expected: Option<u64>) {
        assert_eq!(
            HumanDuration::parse(input).ok().map(HumanDuration::as_secs),
            expected,
            "{input:?}"
        );
    }

    #[test]
    fn table() {
        check("90s", Some(90));
        check("10m", Some(600));
        check("2h", Some(7200));
        check("1h30m", Some(5400));
        check("1d", Some(86_400));
        check("366d", Some(366 * 86_400));
        check("367d", None);
        check("0", None);
        check("0s", None);
        check("0h0m", None);
        check("-5m", None);
        check("+5m", None);
        check("abc", None);
        check("", None);
        check("10", None);
        check("m", None);
        check("30m1h", None);
        check("1h1h", None);
        check("1.5h", None);
        check("1 h", None);
        check("10M", None);
        check("99999999999999999999s", None);
    }

    #[test]
    fn errors_explain() {
        let e = HumanDuration::parse("0").unwrap_err().to_string();
        assert!(e.contains("positive number"), "{e}");
        let e = HumanDuration::parse("0m").unwrap_err().to_string();
        assert!(e.contains("zero"), "{e}");
        let e = HumanDuration::parse("-5m").unwrap_err().to_string();
        assert!(e.contains("\"-5m\""), "{e}");
    }

    proptest! {
        #[test]
        fn display_round_trips(secs in 1u64..=MAX_DURATION.as_secs()) {
            let d = HumanDuration::from_secs(secs).unwrap();
            prop_assert_eq!(HumanDuration::parse(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = HumanDuration::parse(&s);
        }
    }
}
