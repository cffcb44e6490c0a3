//! The audit trail's hash chain: canonical encoding, hashing and verification.
//!
//! Each event's hash is `SHA-256(canonical JSON of the event without "hash")`,
//! hex-encoded; the event includes the previous event's hash (`prev_hash`), and
//! the first event's `prev_hash` is 64 zeros. Any edit, reordering, insertion or
//! deletion inside the chain breaks it at the first affected event. Cutting off
//! the tail leaves a valid shorter chain; `audit verify` catches that through
//! the certificates that name their issuance events and through the signed
//! checkpoints ([`checkpoint`]) back to the latest one it is given.
//!
//! Canonical JSON: objects with keys sorted by their UTF-8 bytes, no whitespace,
//! strings escaped as serde_json does (`"`, `\`, and control characters only;
//! other characters as raw UTF-8), integers only (no floats). The test vector in
//! `docs/security-model.md` is checked by `tests::published_test_vector`.

pub mod checkpoint;

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened to the attempt an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It was done.
    Success,
    /// A rule refused it.
    Denied,
    /// It failed.
    Error,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Outcome::Success),
            "denied" => Some(Outcome::Denied),
            "error" => Some(Outcome::Error),
            _ => None,
        }
    }
}

/// An event about to be appended (the store assigns seq, prev_hash and hash).
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// When it happened (UTC).
    pub time: DateTime<Utc>,
    /// Who did it: `admin:<name>`, `user:<issuer>#<subject>`, `system`.
    pub actor: String,
    /// Where it came from: `cli`, an IP address, `bastion:<name>`.
    pub source: String,
    /// What was attempted, e.g. `cert.issue`.
    pub action: String,
    /// What it was done to, e.g. `cert:<serial>`.
    pub object: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why (the refusal message, the requester's reason).
    pub reason: String,
    /// Structured details: JSON without floats (see [`canonical_json`]).
    pub details: Value,
}

/// An event as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// RFC 3339 UTC time with microseconds, as stored.
    pub time: String,
    /// See [`NewEvent::actor`].
    pub actor: String,
    /// See [`NewEvent::source`].
    pub source: String,
    /// See [`NewEvent::action`].
    pub action: String,
    /// See [`NewEvent::object`].
    pub object: String,
    /// `success`, `denied` or `error`.
    pub outcome: String,
    /// See [`NewEvent::reason`].
    pub reason: String,
    /// Canonical JSON text of the details.
    pub details: String,
    /// The previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// The stored form of a time: RFC 3339, UTC, microseconds, `Z`.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Why a value cannot be encoded canonically.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "audit details must hold only strings, integers, booleans, null, arrays and objects (found a float)"
)]
pub struct FloatInDetails;

/// Writes `value` as canonical JSON.
pub fn canonical_json(value: &Value) -> Result<String, FloatInDetails> {
    let mut out = String::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_string(s: &str, out: &mut String) {
    // serde_json's string escaping is the canonical one; it cannot fail for a str.
    out.push_str(&Value::String(s.to_owned()).to_string());
}

fn write_canonical(value: &Value, out: &mut String) -> Result<(), FloatInDetails> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                return Err(FloatInDetails);
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(&map[key], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

impl Event {
    /// The event as a JSON object; with `include_hash` false, the hashed form.
    pub fn to_json(&self, include_hash: bool) -> Value {
        let details: Value =
            serde_json::from_str(&self.details).unwrap_or(Value::String(self.details.clone()));
        let mut map = Map::new();
        map.insert("seq".into(), self.seq.into());
        map.insert("time".into(), self.time.clone().into());
        map.insert("actor".into(), self.actor.clone().into());
        map.insert("source".into(), self.source.clone().into());
        map.insert("action".into(), self.action.clone().into());
        map.insert("object".into(), self.object.clone().into());
        map.insert("outcome".into(), self.outcome.clone().into());
        map.insert("reason".into(), self.reason.clone().into());
        map.insert("details".into(), details);
        map.insert("prev_hash".into(), self.prev_hash.clone().into());
        if include_hash {
            map.insert("hash".into(), self.hash.clone().into());
        }
        Value::Object(map)
    }

    /// Recomputes this event's hash from its fields.
    pub fn compute_hash(&self) -> Result<String, FloatInDetails> {
        let text = canonical_json(&self.to_json(false))?;
        Ok(hex::encode(Sha256::digest(text.as_bytes())))
    }

    /// Reads one line of `tpa-ca audit export`.
    pub fn from_export_line(line: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let obj = v.as_object().ok_or("not a JSON object")?;
        let text = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(format!("field {k:?} missing or not a string"))
        };
        let details = obj.get("details").ok_or("field \"details\" missing")?;
        Ok(Self {
            seq: obj
                .get("seq")
                .and_then(Value::as_i64)
                .ok_or("field \"seq\" missing or not an integer")?,
            time: text("time")?,
            actor: text("actor")?,
            source: text("source")?,
            action: text("action")?,
            object: text("object")?,
            outcome: text("outcome")?,
            reason: text("reason")?,
            details: canonical_json(details).map_err(|e| e.to_string())?,
            prev_hash: text("prev_hash")?,
            hash: text("hash")?,
        })
    }
}

/// The first problem found in a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {problem}")]
pub struct ChainBreak {
    /// The first bad sequence number.
    pub seq: i64,
    /// What is wrong there.
    pub problem: String,
}

/// Walks a chain in order and remembers where it stands.
#[derive(Debug)]
pub struct ChainVerifier {
    next_seq: i64,
    prev_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl ChainVerifier {
    /// A verifier for a part of a chain that starts at `seq`, trusting that
    /// the event before it had hash `prev_hash` (a partial export).
    pub fn starting_at(seq: i64, prev_hash: &str) -> Self {
        Self {
            next_seq: seq,
            prev_hash: prev_hash.to_owned(),
        }
    }

    /// The seq the next event must have.
    pub fn next_seq(&self) -> i64 {
        self.next_seq
    }

    /// Checks the next event.
    pub fn push(&mut self, event: &Event) -> Result<(), ChainBreak> {
        let brk = |seq: i64, problem: String| Err(ChainBreak { seq, problem });
        if event.seq != self.next_seq {
            let problem = if event.seq > self.next_seq {
                format!(
                    "expected seq {} but found seq {} (events deleted)",
                    self.next_seq, event.seq
                )
            } else {
                format!(
                    "seq {} appears after seq {} (events reordered or duplicated)",
                    event.seq,
                    self.next_seq - 1
                )
            };
            return brk(self.next_seq.min(event.seq), problem);
        }
        if event.prev_hash != self.prev_hash {
            return brk(event.seq, "prev_hash does not match the previous event's hash (event replaced, inserted or reordered)".to_owned());
        }
        match event.compute_hash() {
            Ok(hash) if hash == event.hash => {}
            Ok(_) => {
                return brk(
                    event.seq,
                    "hash does not match the event's contents (event edited)".to_owned(),
                );
            }
            Err(e) => return brk(event.seq, e.to_string()),
        }
        if Outcome::parse(&event.outcome).is_none() {
            return brk(event.seq, format!("unknown outcome {:?}", event.outcome));
        }
        self.next_seq += 1;
        self.prev_hash = event.hash.clone();
        Ok(())
    }

    /// The seq of the last verified event (the number of events verified
    /// when the chain starts at 1).
    pub fn count(&self) -> i64 {
        self.next_seq - 1
    }

    /// The hash of the last verified event (the chain head).
    pub fn head(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: i64, prev_hash: &str) -> Event {
        let mut e = Event {
            seq,
            time: "2026-11-23T10:00:00.000000Z".into(),
            actor: "admin:root".into(),
            source: "cli".into(),
            action: "cert.issue".into(),
            object: "cert:42".into(),
            outcome: "success".into(),
            reason: "INC-1 \"disk\" full\n".into(),
            details: canonical_json(
                &json!({"principals": ["deploy"], "ttl_secs": 600, "b": {"z": 1, "a": null}}),
            )
            .unwrap(),
            prev_hash: prev_hash.into(),
            hash: String::new(),
        };
        e.hash = e.compute_hash().unwrap();
        e
    }

    #[test]
    fn canonical_json_sorts_and_escapes() {
        let v =
            json!({"b": 1, "a": [true, null, "x\"y\\z\n\u{1}é"], "A": {"d": -5, "c": u64::MAX}});
        assert_eq!(
            canonical_json(&v).unwrap(),
            r#"{"A":{"c":18446744073709551615,"d":-5},"a":[true,null,"x\"y\\z\n\u0001é"],"b":1}"#
        );
        assert_eq!(canonical_json(&json!({"f": 1.5})), Err(FloatInDetails));
    }

    /// The vector published in docs/security-model.md; change both together.
    #[test]
    fn published_test_vector() {
        let e = event(1, GENESIS_HASH);
        assert_eq!(
            canonical_json(&e.to_json(false)).unwrap(),
            r#"{"action":"cert.issue","actor":"admin:root","details":{"b":{"a":null,"z":1},"principals":["deploy"],"ttl_secs":600},"object":"cert:42","outcome":"success","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","reason":"INC-1 \"disk\" full\n","seq":1,"source":"cli","time":"2026-11-23T10:00:00.000000Z"}"#
        );
        assert_eq!(
            e.hash,
            "2c6b3453c52ef50edde110a5183fbb845da2235ef1e94e4265ebc9623e98d1ec"
        );
    }

    fn chain(n: i64) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for seq in 1..=n {
            let prev = out
                .last()
                .map_or(GENESIS_HASH.to_owned(), |e| e.hash.clone());
            out.push(event(seq, &prev));
        }
        out
    }

    fn verify(events: &[Event]) -> Result<i64, ChainBreak> {
        let mut v = ChainVerifier::default();
        for e in events {
            v.push(e)?;
        }
        Ok(v.count())
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn edit_is_found() {
        let mut c = chain(5);
        c[2].reason = "nothing to see".into();
        assert_eq!(verify(&c).unwrap_err().seq, 3);
    }

    #[test]
    fn deletion_is_found() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c).unwrap_err().seq, 2);
    }

    #[test]
    fn swap_is_found() {
        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(verify(&c).unwrap_err().seq, 2);
        // Swapping the seq numbers too still breaks prev_hash.
        let mut c = chain(5);
        c.swap(1, 2);
        c[1].seq = 2;
        c[2].seq = 3;
        assert_eq!(verify(&c).unwrap_err().seq, 2);
    }

    #[test]
    fn export_line_round_trips() {
        let e = event(1, GENESIS_HASH);
        let line = canonical_json(&e.to_json(true)).unwrap();
        assert_eq!(Event::from_export_line(&line).unwrap(), e);
    }
}
