//! Which `[[alerts]]` rules an audit event raises, and about what subject.
//! Pure over the event, the rules and the burst counters: no I/O (the role
//! of a request is looked up by the caller).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Datelike as _, TimeDelta, Timelike as _, Utc};
use serde_json::Value;

use crate::config::{AlertKind, AlertRule, BurstKey, Hours, day_number};
use tpa_core::audit::Event;

/// The most audit seqs an alert names.
pub const MAX_SEQS: usize = 20;
/// The most (rule, subject) burst counters kept; the oldest go first.
const MAX_COUNTERS: usize = 10_000;

/// A rule an event raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index into the rules.
    pub rule: usize,
    /// What the alert is about (dedup is per rule and subject).
    pub subject: String,
    /// Events counted (1, or the burst's count).
    pub count: u64,
    /// The events that raised it (last [`MAX_SEQS`]).
    pub seqs: Vec<i64>,
    /// A short description of the match for people.
    pub what: String,
}

/// One counted denied event: when, how many it stands for, its audit seq.
type Counted = (DateTime<Utc>, u64, i64);

/// The denied events seen per (rule index, subject) inside the rule's window.
#[derive(Debug, Clone, Default)]
pub struct Bursts(HashMap<(usize, String), VecDeque<Counted>>);

fn details(e: &Event) -> Value {
    serde_json::from_str(&e.details).unwrap_or(Value::Null)
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn success(e: &Event) -> bool {
    e.outcome == "success"
}

/// Whether `at` falls outside `hours`.
pub fn outside(hours: &Hours, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&hours.offset);
    let minute = local.hour() * 60 + local.minute();
    let inside_time = if hours.start < hours.end {
        hours.start <= minute && minute < hours.end
    } else {
        minute >= hours.start || minute < hours.end
    };
    !(inside_time && hours.days.contains(&day_number(local.weekday())))
}

impl Bursts {
    /// Counts a denied event for (`rule`, `subject`) and returns the total
    /// inside the window ending at `at`, with the seqs counted.
    fn count(
        &mut self,
        key: (usize, String),
        at: DateTime<Utc>,
        window: TimeDelta,
        n: u64,
        seq: i64,
    ) -> (u64, Vec<i64>) {
        if self.0.len() >= MAX_COUNTERS && !self.0.contains_key(&key) {
            // Drop the counters whose last event is oldest.
            let mut last: Vec<_> = self
                .0
                .iter()
                .map(|(k, q)| (q.back().map(|x| x.0), k.clone()))
                .collect();
            last.sort();
            for (_, k) in last.into_iter().take(MAX_COUNTERS / 10) {
                self.0.remove(&k);
            }
        }
        let queue = self.0.entry(key).or_default();
        queue.push_back((at, n, seq));
        while queue.front().is_some_and(|(t, _, _)| *t <= at - window) {
            queue.pop_front();
        }
        let total = queue.iter().map(|(_, n, _)| n).sum();
        let seqs = queue
            .iter()
            .rev()
            .take(MAX_SEQS)
            .map(|(_, _, s)| *s)
            .rev()
            .collect();
        (total, seqs)
    }
}

/// The rules `event` raises. `role_of` gives the role of a request id.
pub fn evaluate(
    rules: &[AlertRule],
    bursts: &mut Bursts,
    event: &Event,
    at: DateTime<Utc>,
    role_of: &mut dyn FnMut(&str) -> Option<String>,
) -> Vec<Match> {
    let seen = Seen {
        event,
        details: details(event),
        issued: event.action == "cert.issue" && success(event),
        at,
    };
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let single = match &rule.kind {
            AlertKind::BreakGlass => seen.break_glass(),
            AlertKind::OutsideHours(hours) => seen.outside_hours(hours),
            AlertKind::DeniedBurst { threshold, per } => {
                out.extend(seen.denied_burst(i, rule, *threshold, *per, bursts));
                continue;
            }
            AlertKind::BastionHostRefused => seen.bastion_host_refused(),
            AlertKind::Revocation => seen.revocation(),
            AlertKind::SensitiveRole(roles) => seen.sensitive_role(roles, role_of),
        };
        out.extend(single.map(|(subject, what)| Match {
            rule: i,
            subject,
            count: 1,
            seqs: vec![event.seq],
            what,
        }));
    }
    out
}

/// The event being evaluated, with what every rule looks at.
struct Seen<'a> {
    event: &'a Event,
    /// The event's details, parsed once.
    details: Value,
    /// Whether it is a certificate issued.
    issued: bool,
    at: DateTime<Utc>,
}

/// A single event's match: its subject and what it was.
type Single = Option<(String, String)>;

impl Seen<'_> {
    fn break_glass(&self) -> Single {
        let event = self.event;
        if event.action == "request.break_glass" && success(event) {
            Some((event.object.clone(), "break-glass self-approval".into()))
        } else if self.issued && event.actor.starts_with("admin:") {
            Some((
                event.actor.clone(),
                "certificate from `tpa-ca issue` (admin break-glass)".into(),
            ))
        } else {
            None
        }
    }

    fn outside_hours(&self, hours: &Hours) -> Single {
        let event = self.event;
        let access = self.issued || (event.action == "session.record" && success(event));
        if !access || !outside(hours, self.at) {
            return None;
        }
        let subject = if self.issued {
            event.actor.clone()
        } else {
            event.object.clone()
        };
        Some((subject, format!("{} outside working hours", event.action)))
    }

    /// Counts a denied event towards its subject's burst; a match once the
    /// window holds `threshold` of them.
    fn denied_burst(
        &self,
        i: usize,
        rule: &AlertRule,
        threshold: u64,
        per: BurstKey,
        bursts: &mut Bursts,
    ) -> Option<Match> {
        let event = self.event;
        if event.outcome != "denied" {
            return None;
        }
        let bastion = event.action.starts_with("bastion.");
        let subject = match per {
            // A bastion refusal has no authenticated actor.
            BurstKey::Actor if bastion => return None,
            BurstKey::Actor => event.actor.clone(),
            BurstKey::Source if bastion => text(&self.details, "client").unwrap_or_default(),
            BurstKey::Source => event.source.clone(),
        };
        let n = if bastion {
            self.details
                .get("count")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1)
        } else {
            1
        };
        let window = TimeDelta::from_std(rule.window).unwrap_or(TimeDelta::minutes(15));
        let (count, seqs) = bursts.count((i, subject.clone()), self.at, window, n, event.seq);
        (count >= threshold).then(|| Match {
            rule: i,
            subject,
            count,
            seqs,
            what: format!("{count} denied events within the window"),
        })
    }

    fn bastion_host_refused(&self) -> Single {
        let what = text(&self.details, "what");
        let forward = what
            .as_deref()
            .is_some_and(|w| w.starts_with("direct-tcpip "));
        if self.event.action != "bastion.channel_refused" || !forward {
            return None;
        }
        let request = text(&self.details, "request")?;
        Some((
            format!("request:{request}"),
            format!(
                "bastion refused {} outside the request",
                what.unwrap_or_default()
            ),
        ))
    }

    fn revocation(&self) -> Single {
        let event = self.event;
        (event.action.ends_with(".revoke") && success(event))
            .then(|| (event.object.clone(), format!("{} done", event.action)))
    }

    fn sensitive_role(
        &self,
        roles: &std::collections::BTreeSet<tpa_core::RoleName>,
        role_of: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Single {
        if !self.issued {
            return None;
        }
        let request = text(&self.details, "request_id")?;
        let role = role_of(&request)?;
        roles.iter().any(|r| r.as_str() == role).then(|| {
            (
                format!("request:{request}"),
                format!("certificate issued for sensitive role {role}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{FixedOffset, TimeZone as _};

    use super::*;

    fn hours(start: u32, end: u32, offset_hours: i32) -> Hours {
        Hours {
            start,
            end,
            days: (0..5).collect::<BTreeSet<u8>>(),
            offset: FixedOffset::east_opt(offset_hours * 3600).unwrap(),
        }
    }

    fn check(h: &Hours, (y, m, d, hh, mm): (i32, u32, u32, u32, u32), expected: bool) {
        let at = Utc.with_ymd_and_hms(y, m, d, hh, mm, 0).unwrap();
        assert_eq!(outside(h, at), expected, "{at}");
    }

    #[test]
    fn working_hours_days_offsets_and_midnight() {
        // issue 17: 2026-12-07 is a Monday.
        let office = hours(8 * 60, 18 * 60, 0);
        check(&office, (2026, 12, 7, 9, 0), false);
        check(&office, (2026, 12, 7, 7, 59), true);
        check(&office, (2026, 12, 7, 18, 0), true);
        check(&office, (2026, 12, 12, 10, 0), true); // Saturday
        // UTC+1: 07:30 UTC is 08:30 there.
        check(&hours(8 * 60, 18 * 60, 1), (2026, 12, 7, 7, 30), false);
        // A night shift 22:00-06:00 wraps midnight.
        let night = hours(22 * 60, 6 * 60, 0);
        check(&night, (2026, 12, 8, 23, 0), false);
        check(&night, (2026, 12, 8, 5, 59), false);
        check(&night, (2026, 12, 8, 12, 0), true);
    }

    #[test]
    fn bursts_count_inside_the_sliding_window_only() {
        // issue 17
        let mut b = Bursts::default();
        let t0 = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
        let w = TimeDelta::minutes(1);
        let key = || (0, "user:x".to_owned());
        assert_eq!(b.count(key(), t0, w, 1, 1).0, 1);
        assert_eq!(b.count(key(), t0 + TimeDelta::seconds(30), w, 3, 2).0, 4);
        // 61 s after the first: the first has left the window.
        let (n, seqs) = b.count(key(), t0 + TimeDelta::seconds(61), w, 1, 3);
        assert_eq!((n, seqs), (4, vec![2, 3]));
        assert_eq!(b.count((0, "user:y".to_owned()), t0, w, 1, 4).0, 1);
    }
}
