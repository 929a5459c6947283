//! When scheduled work runs, in pulp-admin's words: an ISO 8601 repeating
//! interval such as `2026-12-01T00:00Z/PT1H` (from that time, every hour),
//! `R3/2026-12-01T00:00Z/P1D` (three times, daily) or `PT30M` (from now,
//! every half hour).

use std::fmt;
use std::time::{Duration, SystemTime};

/// The shortest interval a schedule may have.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A repeating interval: the first run, the time between runs, and how
/// many runs in all (`None`: forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    pub start: SystemTime,
    pub every: Duration,
    pub times: Option<u64>,
}

impl Recurrence {
    /// Parse `[Rn/][start/]duration`; a missing start is `now`.
    pub fn parse(text: &str, now: SystemTime) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{text:?} is not an ISO 8601 repeating interval ({why}); write START/DURATION \
                 such as 2026-12-01T00:00Z/PT1H, R3/START/DURATION, or DURATION such as PT30M"
            )
        };
        let mut parts: Vec<&str> = text.trim().split('/').collect();
        let times = match parts.first() {
            Some(r) if r.starts_with('R') => {
                let n = &r[1..];
                let times = if n.is_empty() {
                    None
                } else {
                    Some(n.parse::<u64>().map_err(|_| bad("Rn needs a number"))?)
                };
                parts.remove(0);
                times
            }
            _ => None,
        };
        if times == Some(0) {
            return Err(bad("R0 never runs"));
        }
        let (start, duration) = match parts.as_slice() {
            [duration] => (now, *duration),
            [start, duration] => (
                parse_time(start).ok_or_else(|| bad("bad start time"))?,
                *duration,
            ),
            _ => return Err(bad("too many parts")),
        };
        let every = parse_duration(duration).ok_or_else(|| bad("bad duration"))?;
        if every < MIN_INTERVAL {
            return Err(bad("the duration must be at least a second"));
        }
        Ok(Recurrence {
            start,
            every,
            times,
        })
    }

    /// The run due at or after `at`, counting runs from `start`; `None`
    /// when every run has passed.
    pub fn next_at_or_after(&self, at: SystemTime) -> Option<SystemTime> {
        let n = match at.duration_since(self.start) {
            Err(_) => 0,
            Ok(since) => since.as_nanos().div_ceil(self.every.as_nanos()) as u64,
        };
        self.nth(n)
    }

    /// The run after the one due at `due` (runs missed while nothing was
    /// running are skipped: the next one is after `now`).
    pub fn next_after(&self, due: SystemTime, now: SystemTime) -> Option<SystemTime> {
        let after = due.max(now) + Duration::from_nanos(1);
        self.next_at_or_after(after)
    }

    fn nth(&self, n: u64) -> Option<SystemTime> {
        if self.times.is_some_and(|t| n >= t) {
            return None;
        }
        let offset = self.every.checked_mul(u32::try_from(n).ok()?)?;
        self.start.checked_add(offset)
    }
}

impl fmt::Display for Recurrence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.times {
            write!(f, "R{n}/")?;
        }
        let start = humantime::format_rfc3339_seconds(self.start);
        write!(f, "{start}/{}", format_duration(self.every))
    }
}

/// A UTC time: `2026-12-01T00:00Z`, `2026-12-01T00:00:00.5Z`, or a date
/// (its midnight).
fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim().trim_end_matches('Z');
    let full = match s.split_once('T') {
        // Minutes precision (pulp-admin's examples): add the seconds.
        Some((date, clock)) if clock.len() == 5 => format!("{date}T{clock}:00Z"),
        Some(_) => format!("{s}Z"),
        None => format!("{s}T00:00:00Z"),
    };
    humantime::parse_rfc3339_weak(&full).ok()
}

/// `PnW`, or `PnDTnHnMnS` with any parts (seconds may have a fraction).
fn parse_duration(s: &str) -> Option<Duration> {
    let rest = s.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    let mut secs = 0f64;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut number = String::new();
        let mut units = units.iter();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            // Units in order, each once.
            let (_, scale) = units.by_ref().find(|(u, _)| *u == c)?;
            secs += number.parse::<f64>().ok()? * scale;
            number.clear();
        }
        number.is_empty().then_some(())
    };
    take(
        date,
        &[
            ('Y', 365.0 * 86400.0),
            ('M', 30.0 * 86400.0),
            ('W', 7.0 * 86400.0),
            ('D', 86400.0),
        ],
    )?;
    if let Some(time) = time {
        take(time, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    (0.0..1e12)
        .contains(&secs)
        .then(|| Duration::from_secs_f64(secs))
}

/// `PT1H30M`, `P1D`, `PT0.5S`.
fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    let days = secs / 86400;
    secs %= 86400;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::from("P");
    if days > 0 {
        out += &format!("{days}D");
    }
    if h + m + s > 0 || d.subsec_nanos() > 0 || days == 0 {
        out.push('T');
        if h > 0 {
            out += &format!("{h}H");
        }
        if m > 0 {
            out += &format!("{m}M");
        }
        if s > 0 || d.subsec_nanos() > 0 || h + m == 0 {
            let frac = d.subsec_millis();
            if frac > 0 {
                out += &format!("{s}.{frac:03}S");
            } else {
                out += &format!("{s}S");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn intervals_parse_as_pulp_admin_writes_them() {
        let now = at("2026-12-04T10:00:00Z");
        let r = Recurrence::parse("2026-12-01T00:00Z/PT1H", now).unwrap();
        assert_eq!(r.start, at("2026-12-01T00:00:00Z"));
        assert_eq!(r.every, Duration::from_secs(3600));
        assert_eq!(r.times, None);
        assert_eq!(r.to_string(), "2026-12-01T00:00:00Z/PT1H");
        let r = Recurrence::parse("R3/2026-12-01T00:00:00Z/P1DT12H", now).unwrap();
        assert_eq!((r.every, r.times), (Duration::from_secs(129_600), Some(3)));
        assert_eq!(r.to_string(), "R3/2026-12-01T00:00:00Z/P1DT12H");
        let r = Recurrence::parse("PT30M", now).unwrap();
        assert_eq!((r.start, r.every), (now, Duration::from_secs(1800)));
        assert_eq!(
            Recurrence::parse("P2W", now).unwrap().every,
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(
            Recurrence::parse("2026-12-01/PT2.5S", now).unwrap().every,
            Duration::from_millis(2500)
        );
        for bad in [
            "",
            "P",
            "PT",
            "1H",
            "PT1X",
            "PT1M1H",
            "R0/PT1H",
            "Rx/PT1H",
            "nope/PT1H",
            "2026-12-01T00:00Z/PT1H/PT1H/x",
            "PT0S",
            "PT0.5S",
        ] {
            assert!(Recurrence::parse(bad, now).is_err(), "{bad:?}");
        }
        assert!(
            Recurrence::parse("PT1X", now)
                .unwrap_err()
                .contains("2026-12-01T00:00Z/PT1H")
        );
    }

    #[test]
    fn runs_follow_the_start_and_skip_what_was_missed() {
        let now = at("2026-12-04T10:20:00Z");
        let r = Recurrence::parse("2026-12-01T00:00Z/PT1H", now).unwrap();
        assert_eq!(r.next_at_or_after(now), Some(at("2026-12-04T11:00:00Z")));
        assert_eq!(
            r.next_at_or_after(at("2026-12-04T11:00:00Z")),
            Some(at("2026-12-04T11:00:00Z"))
        );
        assert_eq!(
            r.next_at_or_after(at("2026-11-01T00:00:00Z")),
            Some(at("2026-12-01T00:00:00Z"))
        );
        // Due at 09:00 and run late at 10:20: next at 11:00, not 10:00.
        assert_eq!(
            r.next_after(at("2026-12-04T09:00:00Z"), now),
            Some(at("2026-12-04T11:00:00Z"))
        );
        let three = Recurrence::parse("R3/2026-12-01T00:00Z/P1D", now).unwrap();
        assert_eq!(
            three.next_after(at("2026-12-02T00:00:00Z"), at("2026-12-02T00:00:01Z")),
            Some(at("2026-12-03T00:00:00Z"))
        );
        assert_eq!(
            three.next_after(at("2026-12-03T00:00:00Z"), at("2026-12-03T00:00:01Z")),
            None
        );
    }
}
