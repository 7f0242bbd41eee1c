//! Recurring slots in a location's time zone ("weekdays at 07:00 and 18:30
//! local, 60 minutes"), turned into UTC instants. Each occurrence is
//! resolved on its own date, so a class at 07:00 stays at 07:00 local across
//! a daylight-saving change; its UTC instant moves instead.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Occurrences one rule may produce: a year of twice-daily classes.
pub const SLOTS_PER_RULE_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRule {
    pub weekdays: Vec<Weekday>,
    pub times: Vec<Time>,
    pub duration_minutes: i64,
    pub first_day: Date,
    pub last_day: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotRuleError {
    #[error("pick at least one weekday")]
    NoWeekdays,
    #[error("give at least one time of day")]
    NoTimes,
    #[error("a slot lasts 1 minute to 24 hours")]
    Duration,
    #[error("the last day is before the first")]
    Range,
    #[error("that makes more than {SLOTS_PER_RULE_MAX} slots; shorten the range")]
    TooMany,
    #[error("unknown time zone {0}")]
    TimeZone(String),
}

/// `(starts_at, ends_at)` of every occurrence, in order.
pub fn generate(
    rule: &SlotRule,
    timezone: &str,
) -> Result<Vec<(Timestamp, Timestamp)>, SlotRuleError> {
    if rule.weekdays.is_empty() {
        return Err(SlotRuleError::NoWeekdays);
    }
    if rule.times.is_empty() {
        return Err(SlotRuleError::NoTimes);
    }
    if !(1..=24 * 60).contains(&rule.duration_minutes) {
        return Err(SlotRuleError::Duration);
    }
    if rule.last_day < rule.first_day {
        return Err(SlotRuleError::Range);
    }
    let tz = TimeZone::get(timezone).map_err(|_| SlotRuleError::TimeZone(timezone.to_owned()))?;
    let mut times = rule.times.clone();
    times.sort();
    times.dedup();
    let mut out = Vec::new();
    let mut day = rule.first_day;
    while day <= rule.last_day {
        if rule.weekdays.contains(&day.weekday()) {
            for time in &times {
                // A local time that does not exist (in a spring-forward gap)
                // moves forward, as clocks do; an ambiguous one (autumn)
                // takes its first, earlier occurrence.
                let start = day
                    .to_datetime(*time)
                    .to_zoned(tz.clone())
                    .map_err(|_| SlotRuleError::TimeZone(timezone.to_owned()))?;
                let end = start
                    .checked_add(rule.duration_minutes.minutes())
                    .map_err(|_| SlotRuleError::Duration)?;
                out.push((start.timestamp(), end.timestamp()));
                if out.len() > SLOTS_PER_RULE_MAX {
                    return Err(SlotRuleError::TooMany);
                }
            }
        }
        day = match day.tomorrow() {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn weekdays() -> Vec<Weekday> {
        vec![
            Weekday::Monday,
            Weekday::Tuesday,
            Weekday::Wednesday,
            Weekday::Thursday,
            Weekday::Friday,
        ]
    }

    #[test]
    fn weekday_classes_keep_their_local_time_across_the_spring_change_in_berlin() {
        // Europe/Berlin moves from UTC+1 to UTC+2 on Sunday 29 March 2026.
        let rule = SlotRule {
            weekdays: weekdays(),
            times: vec![time(7, 0, 0, 0), time(18, 30, 0, 0)],
            duration_minutes: 60,
            first_day: date(2026, 3, 26),
            last_day: date(2026, 3, 31),
        };
        let slots = generate(&rule, "Europe/Berlin").expect("slots");
        let starts: Vec<String> = slots.iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(
            starts,
            vec![
                "2026-03-26T06:00:00Z", // Thu 07:00 CET
                "2026-03-26T17:30:00Z",
                "2026-03-27T06:00:00Z", // Fri
                "2026-03-27T17:30:00Z",
                "2026-03-30T05:00:00Z", // Mon 07:00 CEST: an hour earlier in UTC
                "2026-03-30T16:30:00Z",
                "2026-03-31T05:00:00Z",
                "2026-03-31T16:30:00Z",
            ]
        );
        for (start, end) in &slots {
            assert_eq!(
                end.duration_since(*start),
                jiff::SignedDuration::from_secs(3600)
            );
        }
    }

    #[test]
    fn a_slot_in_the_spring_gap_moves_forward_and_one_in_the_autumn_overlap_takes_the_first() {
        let rule = |day| SlotRule {
            weekdays: vec![Weekday::Sunday],
            times: vec![time(2, 30, 0, 0)],
            duration_minutes: 30,
            first_day: day,
            last_day: day,
        };
        let spring = generate(&rule(date(2026, 3, 29)), "Europe/Berlin").expect("slots");
        assert_eq!(
            spring[0].0.to_string(),
            "2026-03-29T01:30:00Z",
            "03:30 CEST"
        );
        let autumn = generate(&rule(date(2026, 10, 25)), "Europe/Berlin").expect("slots");
        assert_eq!(
            autumn[0].0.to_string(),
            "2026-10-25T00:30:00Z",
            "02:30 CEST, the first"
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        let good = SlotRule {
            weekdays: weekdays(),
            times: vec![time(9, 0, 0, 0)],
            duration_minutes: 60,
            first_day: date(2026, 1, 1),
            last_day: date(2026, 1, 31),
        };
        assert!(generate(&good, "Europe/Berlin").is_ok());
        assert_eq!(
            generate(&good, "Mars/Base"),
            Err(SlotRuleError::TimeZone("Mars/Base".into()))
        );
        let mut bad = good.clone();
        bad.weekdays.clear();
        assert_eq!(generate(&bad, "UTC"), Err(SlotRuleError::NoWeekdays));
        let mut bad = good.clone();
        bad.last_day = date(2025, 12, 31);
        assert_eq!(generate(&bad, "UTC"), Err(SlotRuleError::Range));
        let mut bad = good.clone();
        bad.duration_minutes = 0;
        assert_eq!(generate(&bad, "UTC"), Err(SlotRuleError::Duration));
        let mut bad = good;
        bad.last_day = date(2030, 1, 1);
        assert_eq!(generate(&bad, "UTC"), Err(SlotRuleError::TooMany));
    }
}
