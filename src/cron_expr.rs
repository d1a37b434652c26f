//! Cron expressions: crontab's 5 fields (minute hour day month weekday), or 6 with
//! seconds first, translated for the `cron` crate, which wants seconds and numbers
//! weekdays 1-7 from Sunday (crontab: 0-7, 0 and 7 both Sunday).
//!
//! Crontab runs a job when day-of-month OR day-of-week matches if both are restricted;
//! the crate requires both. So such an expression becomes two schedules, and the next
//! run is the earlier of the two.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, TimeZone};
use cron::Schedule;

#[derive(Clone, Debug)]
pub struct CronSpec {
    schedules: Vec<Schedule>,
}

/// Weekday names crontab accepts (and their long forms), with crontab's numbers.
const DAY_NAMES: [(&str, u32); 16] = [
    ("sun", 0),
    ("sunday", 0),
    ("mon", 1),
    ("monday", 1),
    ("tue", 2),
    ("tues", 2),
    ("tuesday", 2),
    ("wed", 3),
    ("wednesday", 3),
    ("thu", 4),
    ("thurs", 4),
    ("thursday", 4),
    ("fri", 5),
    ("friday", 5),
    ("sat", 6),
    ("saturday", 6),
];

impl CronSpec {
    pub fn parse(expr: &str) -> Result<CronSpec, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), got {n}"
                ))
            }
        };
        let (min, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        let dow = weekdays(dow)?;
        let restricted = |f: &str| f != "*" && f != "?";
        let texts = if restricted(dom) && restricted(&dow) {
            vec![
                format!("{sec} {min} {hour} {dom} {month} *"),
                format!("{sec} {min} {hour} * {month} {dow}"),
            ]
        } else {
            vec![format!("{sec} {min} {hour} {dom} {month} {dow}")]
        };
        let schedules = texts
            .iter()
            .map(|t| Schedule::from_str(t).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CronSpec { schedules })
    }

    /// The first run strictly after `t`.
    pub fn next_after<Z: TimeZone>(&self, t: &DateTime<Z>) -> Option<DateTime<Z>> {
        self.schedules
            .iter()
            .filter_map(|s| s.after(t).next())
            .min()
    }
}

/// Crontab weekday field → the crate's numbering, as `*` or an explicit list.
fn weekdays(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".to_string());
    }
    let mut days = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 =
                    s.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        format!("day-of-week step {s:?} is not a positive number")
                    })?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = match range {
            "*" => (0, 6),
            _ => match range.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None if step > 1 => (day(range)?, 6),
                None => (day(range)?, day(range)?),
            },
        };
        if lo > hi {
            return Err(format!("day-of-week range {range:?} runs backwards"));
        }
        for d in (lo..=hi).step_by(step as usize) {
            days.insert(d % 7);
        }
    }
    if days.len() == 7 {
        return Ok("*".to_string());
    }
    Ok(days
        .iter()
        .map(|d| (d + 1).to_string())
        .collect::<Vec<_>>()
        .join(","))
}

/// One crontab weekday: 0-7 or a name (SUN, Monday, …).
fn day(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!(
                "day-of-week {n} is out of range (0-7, 0 and 7 are Sunday)"
            ))
        };
    }
    let lower = s.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .find(|(name, _)| *name == lower)
        .map(|&(_, d)| d)
        .ok_or_else(|| format!("{s:?} is not a day of the week (0-7 or SUN-SAT)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Utc};

    fn next(expr: &str, from: DateTime<Utc>) -> DateTime<Utc> {
        CronSpec::parse(expr).unwrap().next_after(&from).unwrap()
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn five_fields_run_at_second_zero() {
        // 2026-12-01 is a Tuesday.
        assert_eq!(
            next("0 9 * * *", at(2026, 12, 1, 8, 30, 0)),
            at(2026, 12, 1, 9, 0, 0)
        );
        assert_eq!(
            next("0 9 * * *", at(2026, 12, 1, 9, 0, 0)),
            at(2026, 12, 2, 9, 0, 0)
        );
        assert_eq!(
            next("0 * * * *", at(2026, 12, 1, 8, 30, 5)),
            at(2026, 12, 1, 9, 0, 0)
        );
        assert_eq!(
            next("*/15 * * * *", at(2026, 12, 1, 8, 31, 0)),
            at(2026, 12, 1, 8, 45, 0)
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        assert_eq!(
            next("* * * * * *", at(2026, 12, 1, 8, 0, 0)),
            at(2026, 12, 1, 8, 0, 1)
        );
        assert_eq!(
            next("*/10 * * * * *", at(2026, 12, 1, 8, 0, 1)),
            at(2026, 12, 1, 8, 0, 10)
        );
    }

    #[test]
    fn weekdays_use_crontab_numbering_and_names() {
        assert_eq!(weekdays("0").unwrap(), "1");
        assert_eq!(weekdays("7").unwrap(), "1");
        assert_eq!(weekdays("1-5").unwrap(), "2,3,4,5,6");
        assert_eq!(weekdays("5-7").unwrap(), "1,6,7");
        assert_eq!(weekdays("MON-FRI").unwrap(), "2,3,4,5,6");
        assert_eq!(weekdays("sun,Saturday").unwrap(), "1,7");
        assert_eq!(weekdays("*/2").unwrap(), "1,3,5,7");
        assert_eq!(weekdays("0-7").unwrap(), "*");
        // Monday 9:00 from Tuesday 2026-12-01 → Monday 2026-12-07.
        let monday = next("0 9 * * 1", at(2026, 12, 1, 10, 0, 0));
        assert_eq!(
            (monday.day(), monday.weekday().num_days_from_sunday()),
            (7, 1)
        );
        // Sunday as 0 and as 7.
        assert_eq!(
            next("0 0 * * 0", at(2026, 12, 1, 0, 0, 0)),
            at(2026, 12, 6, 0, 0, 0)
        );
        assert_eq!(
            next("0 0 * * 7", at(2026, 12, 1, 0, 0, 0)),
            at(2026, 12, 6, 0, 0, 0)
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_like_crontab() {
        // "the 15th, or any Friday": from Tue 2026-12-01 the first Friday is the 4th.
        assert_eq!(
            next("0 0 15 * 5", at(2026, 12, 1, 0, 0, 0)),
            at(2026, 12, 4, 0, 0, 0)
        );
        // from Sat 12-12 the 15th (Tuesday) comes before Friday the 18th.
        assert_eq!(
            next("0 0 15 * 5", at(2026, 12, 12, 0, 0, 0)),
            at(2026, 12, 15, 0, 0, 0)
        );
    }

    #[test]
    fn ranges_lists_steps_and_month_names() {
        let t = next("30 8-10/2 1,15 JAN *", at(2026, 12, 1, 0, 0, 0));
        assert_eq!((t.month(), t.day(), t.hour(), t.minute()), (1, 1, 8, 30));
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(CronSpec::parse("* * *")
            .unwrap_err()
            .contains("expected 5 fields"));
        assert!(CronSpec::parse("0 25 * * *").is_err());
        assert!(CronSpec::parse("0 9 * * 8")
            .unwrap_err()
            .contains("out of range"));
        assert!(CronSpec::parse("0 9 * * funday")
            .unwrap_err()
            .contains("not a day"));
        assert!(CronSpec::parse("0 9 * * 5-1")
            .unwrap_err()
            .contains("backwards"));
        assert!(CronSpec::parse("61 * * * *").is_err());
    }
}
