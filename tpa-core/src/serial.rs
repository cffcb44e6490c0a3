//! Certificate serial numbers: random, non-zero, never reused.
//!
//! Uniqueness across the CA's lifetime is enforced by the store (a unique
//! column); this type guarantees the other two properties.

use std::fmt;

use rand::{CryptoRng, RngExt};

/// A certificate serial number. Never zero: OpenSSH treats serial 0 as
/// "no serial", and a KRL cannot revoke it by serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertSerial(u64);

/// Why a value is not a valid serial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    /// Zero is reserved by OpenSSH for "no serial".
    #[error("certificate serial must not be zero")]
    Zero,
    /// Not a decimal number that fits in 64 bits.
    #[error("certificate serial {0} is not a decimal number between 1 and 18446744073709551615")]
    NotANumber(String),
}

impl CertSerial {
    /// Draws a random non-zero serial.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let value: u64 = rng.random();
            if value != 0 {
                return Self(value);
            }
        }
    }

    /// Wraps a serial read from a certificate or the store.
    pub fn new(value: u64) -> Result<Self, SerialError> {
        if value == 0 {
            Err(SerialError::Zero)
        } else {
            Ok(Self(value))
        }
    }

    /// Parses the canonical decimal form (no sign, no leading zeros).
    pub fn parse(value: &str) -> Result<Self, SerialError> {
        let bad = || SerialError::NotANumber(crate::identifiers::shown(value));
        if value.is_empty()
            || !value.bytes().all(|b| b.is_ascii_digit())
            || (value.len() > 1 && value.starts_with('0'))
        {
            return Err(bad());
        }
        Self::new(value.parse().map_err(|_| bad())?)
    }

    /// The serial as OpenSSH stores it.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_is_refused() {
        assert_eq!(CertSerial::new(0), Err(SerialError::Zero));
        assert_eq!(CertSerial::parse("0"), Err(SerialError::Zero));
    }

    #[test]
    fn non_canonical_text_is_refused() {
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            "1 ",
            "0x10",
            "18446744073709551616",
            "１",
        ] {
            assert!(CertSerial::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            CertSerial::parse("18446744073709551615").unwrap().get(),
            u64::MAX
        );
    }

    #[test]
    fn generated_serials_are_non_zero_and_distinct() {
        let mut rng = rand::rng();
        let serials: std::collections::HashSet<_> = (0..10_000)
            .map(|_| CertSerial::generate(&mut rng))
            .collect();
        assert_eq!(serials.len(), 10_000);
        assert!(serials.iter().all(|s| s.get() != 0));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(v in 1u64..) {
            let s = CertSerial::new(v).unwrap();
            prop_assert_eq!(CertSerial::parse(&s.to_string()).unwrap(), s);
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = CertSerial::parse(&s);
        }
    }
}
