//! Business hours: when the support team works, and when a first answer can be expected
//! (omni-notifier's acknowledgements and KPIs, the website chat's offline notice).
//!
//! An acknowledgement tells the customer "expect an answer by ...": now plus the channel's
//! first-response target, counted in business minutes. The clock runs only inside the opening
//! spans of each weekday, in the team's time zone, and stops on holidays.
//!
//! Every span is turned into real instants by converting its civil start and end in the zone
//! (jiff's default "compatible" disambiguation), and minutes are counted as elapsed time between
//! those instants: on a day the clocks move, a 01:00-05:00 span holds three or five hours of work.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::{Problems, Validate};
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, ZonedDateTime};

/// The key prefix of the reasons [`BusinessHours::new`] gives (the services' `validate` name
/// their own sections: `notifier.business_hours`, `gateway.chat.<account>.business_hours`).
const SECTION: &str = "business_hours";

/// How many days [`BusinessHours::after`] looks at before giving up (about two years).
const HORIZON_DAYS: usize = 731;

/// The keys of `week`, with the weekday each names.
const DAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
    ("sunday", Weekday::Sunday),
];

/// `[notifier.business_hours]`, `[gateway.chat.<account>.business_hours]`: when the support team
/// works.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursConfig {
    /// IANA time zone of the team, e.g. "Europe/Istanbul", or a fixed offset like "+03:00".
    pub timezone: String,
    /// Opening hours per weekday: keys `monday` .. `sunday` (lowercase English), each a list of
    /// "HH:MM-HH:MM" spans within the day; a day not listed (or an empty list) is closed.
    /// "24:00" is allowed as an end.
    pub week: BTreeMap<String, Vec<String>>,
    /// Closed dates ("YYYY-MM-DD", in the team's time zone): public holidays, shop closures.
    #[serde(default)]
    pub holidays: Vec<String>,
}

impl Validate for BusinessHoursConfig {
    /// Reports every problem (bad zone, unknown weekday key, unparsable or empty/reversed span,
    /// overlapping spans in a day, unparsable holiday, no opening hour in the whole week) with keys like
    /// format!("{prefix}.timezone"), format!("{prefix}.week.{day}"), format!("{prefix}.holidays").
    fn validate(&self, prefix: &str, problems: &mut Problems) {
        // One code path for checking and building, so new() refuses exactly what this reports.
        let _ = compile(self, prefix, problems);
    }
}

/// Compiled business hours.
#[derive(Clone, Debug)]
pub struct BusinessHours {
    /// The team's zone, in which spans and holidays are read.
    tz: TimeZone,
    /// Each weekday's spans, Monday first, sorted by start and not overlapping.
    week: [Vec<Opening>; 7],
    /// Closed dates, civil in `tz`.
    holidays: BTreeSet<Date>,
}

impl BusinessHours {
    /// From a config; Err(reason) for anything validate() would report.
    pub fn new(config: &BusinessHoursConfig) -> Result<Self, String> {
        let mut problems = Problems::default();
        compile(config, SECTION, &mut problems).ok_or_else(|| {
            let reasons: Vec<String> = problems.items().iter().map(|(key, problem)| format!("{key}: {problem}")).collect();
            reasons.join("; ")
        })
    }

    /// Whether the team works at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.after(now, 0).timestamp() == now
    }

    /// The team's time zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The moment `minutes` business minutes after `now`, in the team's zone. With minutes == 0
    /// it is `now` when the team is open, else the next opening. Bounded: the search never runs more
    /// than ~2 years of days (if no opening is found, return the last instant tried: validation
    /// guarantees at least one opening hour a week, so this only bites on absurd holiday lists).
    ///
    /// The last instant tried is the midnight that ends the search window. A span ending exactly
    /// when the minutes run out keeps the answer on that span's end, not the next opening.
    pub fn after(&self, now: Timestamp, minutes: u32) -> ZonedDateTime {
        let mut left = SignedDuration::from_mins(i64::from(minutes));
        // Time before `cursor` is spent: it also keeps spans that overlap after conversion (a
        // fold) from being counted twice.
        let mut cursor = now;
        let first_day = now.to_zoned_datetime(self.tz.clone()).date();
        let mut last_day = first_day;
        for day in first_day.series(1.day()).take(HORIZON_DAYS) {
            last_day = day;
            for (start, end) in self.openings_on(day) {
                if end <= cursor {
                    continue;
                }
                let from = start.max(cursor);
                let open = end.duration_since(from);
                if left <= open {
                    // from + left <= end, so this cannot overflow; `end` is the same bound anyway.
                    return self.zoned(from.checked_add(left).unwrap_or(end));
                }
                left -= open;
                cursor = end;
            }
        }
        let window_end = self.midnight_after(last_day).unwrap_or(cursor).max(cursor);
        self.zoned(window_end)
    }

    /// How long the team was open between two instants (zero when `to` is not after `from`):
    /// the business time a customer waited. Bounded like [`after`](Self::after), ~2 years of days.
    pub fn open_between(&self, from: Timestamp, to: Timestamp) -> SignedDuration {
        let mut open = SignedDuration::ZERO;
        // Time before `cursor` is counted (spans that overlap after conversion count once).
        let mut cursor = from;
        let first_day = from.to_zoned_datetime(self.tz.clone()).date();
        for day in first_day.series(1.day()).take(HORIZON_DAYS) {
            if cursor >= to {
                break;
            }
            for (start, end) in self.openings_on(day) {
                let (start, end) = (start.max(cursor), end.min(to));
                if start < end {
                    open += end.duration_since(start);
                    cursor = end;
                }
            }
            match self.midnight_after(day) {
                Some(midnight) => cursor = cursor.max(midnight),
                None => break,
            }
        }
        open
    }

    /// The opening spans of `day` as real instants, in order; none on a holiday.
    fn openings_on(&self, day: Date) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let openings: &[Opening] = if self.holidays.contains(&day) {
            &[]
        } else {
            // to_monday_zero_offset() is 0..=6, the index of `week`.
            &self.week[day.weekday().to_monday_zero_offset() as usize]
        };
        openings.iter().filter_map(move |opening| self.instants(day, opening))
    }

    /// Where `opening` starts and ends on `day`; None when the zone squeezes it to nothing
    /// (a span inside a skipped hour) or the date is at the end of jiff's range.
    fn instants(&self, day: Date, opening: &Opening) -> Option<(Timestamp, Timestamp)> {
        let start = self.tz.to_timestamp(day.to_datetime(opening.start)).ok()?;
        let end = match opening.end {
            End::At(time) => self.tz.to_timestamp(day.to_datetime(time)).ok()?,
            End::Midnight => self.midnight_after(day)?,
        };
        (start < end).then_some((start, end))
    }

    /// The midnight that ends `day` (the start of the next day), as an instant.
    fn midnight_after(&self, day: Date) -> Option<Timestamp> {
        let next: DateTime = day.tomorrow().ok()?.to_datetime(Time::midnight());
        self.tz.to_timestamp(next).ok()
    }

    /// `instant` shown in the team's zone.
    fn zoned(&self, instant: Timestamp) -> ZonedDateTime {
        instant.to_zoned_datetime(self.tz.clone())
    }
}

/// Where an opening span ends: a time of its day, or the midnight that ends the day ("24:00").
/// The derived order puts every `At` before `Midnight`, which is the order of the ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    /// A time within the day.
    At(Time),
    /// "24:00".
    Midnight,
}

/// One opening span of a weekday; it starts before it ends.
#[derive(Clone, Copy, Debug)]
struct Opening {
    /// Civil start time.
    start: Time,
    /// Civil end.
    end: End,
}

impl fmt::Display for Opening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = match self.end {
            End::At(time) => time.strftime("%H:%M").to_string(),
            End::Midnight => "24:00".to_owned(),
        };
        write!(f, "{}-{end}", self.start.strftime("%H:%M"))
    }
}

/// Checks and builds in one pass: every problem goes to `problems` under `prefix`, and the
/// hours come back only when there was none.
fn compile(config: &BusinessHoursConfig, prefix: &str, problems: &mut Problems) -> Option<BusinessHours> {
    // `problems` may already hold other sections' problems: only new ones count here.
    let before = problems.items().len();
    // An IANA name, or a fixed offset like `+03:00` (no daylight saving rules).
    let tz = jiff::fmt::temporal::DateTimeParser::new().parse_time_zone(&config.timezone);
    if let Err(error) = &tz {
        let reason = format!(
            "`{}` is neither a known IANA time zone nor a fixed offset like +03:00: {error}",
            config.timezone
        );
        problems.push(format!("{prefix}.timezone"), reason);
    }
    let week = compile_week(&config.week, prefix, problems);
    let holidays = compile_holidays(&config.holidays, prefix, problems);
    if problems.items().len() > before {
        return None;
    }
    Some(BusinessHours {
        tz: tz.ok()?,
        week,
        holidays,
    })
}

/// The spans of each weekday, Monday first; reports unknown keys, bad spans and an empty week.
fn compile_week(config: &BTreeMap<String, Vec<String>>, prefix: &str, problems: &mut Problems) -> [Vec<Opening>; 7] {
    let mut week: [Vec<Opening>; 7] = Default::default();
    for (day, spans) in config {
        let key = format!("{prefix}.week.{day}");
        match DAYS.iter().position(|(name, _)| name == day) {
            Some(index) => week[index] = compile_day(spans, &key, problems),
            None => problems.push(key, format!("unknown weekday `{day}`, expected one of monday .. sunday")),
        }
    }
    let open = week.iter().any(|openings| !openings.is_empty());
    problems.check(open, format!("{prefix}.week"), "no opening hour in the whole week");
    week
}

/// One day's spans, sorted by start; reports each unparsable span and each overlapping pair.
fn compile_day(spans: &[String], key: &str, problems: &mut Problems) -> Vec<Opening> {
    let mut openings: Vec<Opening> = spans
        .iter()
        .filter_map(|span| parse_opening(span).map_err(|reason| problems.push(key, reason)).ok())
        .collect();
    openings.sort_by_key(|opening| opening.start);
    for pair in openings.windows(2) {
        // Sorted by start, so only neighbours can overlap; touching spans (12:00, 12:00) are fine.
        if pair[0].end > End::At(pair[1].start) {
            problems.push(key, format!("spans {} and {} overlap", pair[0], pair[1]));
        }
    }
    openings
}

/// Parses "HH:MM-HH:MM" (blanks around the dash allowed), "24:00" only as the end.
fn parse_opening(text: &str) -> Result<Opening, String> {
    let malformed = || format!("`{text}` is not a span HH:MM-HH:MM");
    let (start, end) = text.split_once('-').ok_or_else(malformed)?;
    let start = parse_time(start.trim()).ok_or_else(malformed)?;
    let end = match end.trim() {
        "24:00" => End::Midnight,
        end => End::At(parse_time(end).ok_or_else(malformed)?),
    };
    if End::At(start) >= end {
        return Err(format!("`{text}` is empty or reversed: it must end after it starts"));
    }
    Ok(Opening { start, end })
}

/// Parses "HH:MM" within a day (00:00 to 23:59).
fn parse_time(text: &str) -> Option<Time> {
    Time::strptime("%H:%M", text).ok()
}

/// The closed dates; reports each one that is not a "YYYY-MM-DD" date.
fn compile_holidays(holidays: &[String], prefix: &str, problems: &mut Problems) -> BTreeSet<Date> {
    let mut dates = BTreeSet::new();
    for text in holidays {
        match Date::strptime("%Y-%m-%d", text) {
            Ok(date) => {
                dates.insert(date);
            }
            Err(error) => problems.push(format!("{prefix}.holidays"), format!("`{text}` is not a YYYY-MM-DD date: {error}")),
        }
    }
    dates
}

#[cfg(test)]
mod tests {
    //! Expectations are written as civil datetimes in the zone and compared as their full
    //! RFC 9557 text (instant, offset and zone), so a right instant in a wrong zone fails too.

    use jiff::civil::date;

    use super::*;

    const ISTANBUL: &str = "Europe/Istanbul";
    const AMSTERDAM: &str = "Europe/Amsterdam";
    const WORKDAYS: [&str; 5] = ["monday", "tuesday", "wednesday", "thursday", "friday"];

    /// A config with the same `spans` on each of `days`.
    fn config(tz: &str, days: &[&str], spans: &[&str], holidays: &[&str]) -> BusinessHoursConfig {
        let spans: Vec<String> = spans.iter().map(|span| span.to_string()).collect();
        BusinessHoursConfig {
            timezone: tz.to_owned(),
            week: days.iter().map(|day| (day.to_string(), spans.clone())).collect(),
            holidays: holidays.iter().map(|day| day.to_string()).collect(),
        }
    }

    /// Compiled hours, or the test fails with the reasons.
    fn hours(tz: &str, days: &[&str], spans: &[&str], holidays: &[&str]) -> BusinessHours {
        BusinessHours::new(&config(tz, days, spans, holidays)).unwrap()
    }

    /// Mon-Fri 09:00-18:00 in Istanbul (no DST since 2016).
    fn office() -> BusinessHours {
        hours(ISTANBUL, &WORKDAYS, &["09:00-18:00"], &[])
    }

    /// A civil moment in `tz`.
    fn at(tz: &str, (year, month, day): (i16, i8, i8), hour: i8, minute: i8) -> ZonedDateTime {
        date(year, month, day).at(hour, minute, 0, 0).in_tz(tz).unwrap()
    }

    /// `hours.after(from, minutes)` is `want`, zone and offset included.
    fn assert_after(hours: &BusinessHours, from: &ZonedDateTime, minutes: u32, want: &ZonedDateTime) {
        let got = hours.after(from.timestamp(), minutes);
        assert_eq!(got.to_string(), want.to_string(), "{from} + {minutes} business minutes");
    }

    /// The problem keys `config` gets under the prefix "p".
    fn problem_keys(config: &BusinessHoursConfig) -> Vec<String> {
        let mut problems = Problems::default();
        config.validate("p", &mut problems);
        problems.items().iter().map(|(key, _)| key.clone()).collect()
    }

    #[test]
    fn friday_evening_rolls_over_the_weekend() {
        let friday = at(ISTANBUL, (2026, 3, 6), 17, 0);
        assert_eq!(friday.date().weekday(), Weekday::Friday);
        assert_after(&office(), &friday, 120, &at(ISTANBUL, (2026, 3, 9), 10, 0));
    }

    #[test]
    fn lunch_break_is_not_counted() {
        let hours = hours(ISTANBUL, &WORKDAYS, &["13:00-18:00", "09:00-12:00"], &[]);
        let monday = at(ISTANBUL, (2026, 3, 9), 11, 0);
        assert_after(&hours, &monday, 120, &at(ISTANBUL, (2026, 3, 9), 14, 0));
        // Asked during the break, the clock starts at 13:00.
        assert_after(&hours, &at(ISTANBUL, (2026, 3, 9), 12, 30), 30, &at(ISTANBUL, (2026, 3, 9), 13, 30));
    }

    #[test]
    fn holiday_on_monday_pushes_to_tuesday() {
        let hours = hours(ISTANBUL, &WORKDAYS, &["09:00-18:00"], &["2026-03-09"]);
        let friday = at(ISTANBUL, (2026, 3, 6), 17, 0);
        assert_after(&hours, &friday, 120, &at(ISTANBUL, (2026, 3, 10), 10, 0));
    }

    #[test]
    fn zero_minutes_inside_hours_is_now() {
        let wednesday = at(ISTANBUL, (2026, 3, 11), 10, 15);
        assert_after(&office(), &wednesday, 0, &wednesday);
    }

    #[test]
    fn zero_minutes_outside_hours_is_next_opening() {
        let saturday = at(ISTANBUL, (2026, 3, 7), 12, 0);
        assert_after(&office(), &saturday, 0, &at(ISTANBUL, (2026, 3, 9), 9, 0));
        // Closing time itself is closed.
        let closing = at(ISTANBUL, (2026, 3, 10), 18, 0);
        assert_after(&office(), &closing, 0, &at(ISTANBUL, (2026, 3, 11), 9, 0));
    }

    #[test]
    fn before_opening_counts_from_opening() {
        let early = at(ISTANBUL, (2026, 3, 9), 7, 0);
        assert_after(&office(), &early, 30, &at(ISTANBUL, (2026, 3, 9), 9, 30));
    }

    #[test]
    fn running_out_at_closing_time_stays_that_day() {
        let monday = at(ISTANBUL, (2026, 3, 9), 16, 0);
        assert_after(&office(), &monday, 120, &at(ISTANBUL, (2026, 3, 9), 18, 0));
        assert_after(&office(), &monday, 121, &at(ISTANBUL, (2026, 3, 10), 9, 1));
    }

    #[test]
    fn span_ending_at_24_00_runs_into_the_next_day() {
        let config = BusinessHoursConfig {
            timezone: ISTANBUL.to_owned(),
            week: [("friday", "20:00-24:00"), ("saturday", "00:00-02:00")]
                .into_iter()
                .map(|(day, span)| (day.to_owned(), vec![span.to_owned()]))
                .collect(),
            holidays: Vec::new(),
        };
        let hours = BusinessHours::new(&config).unwrap();
        let friday = at(ISTANBUL, (2026, 3, 6), 23, 0);
        assert_after(&hours, &friday, 60, &at(ISTANBUL, (2026, 3, 7), 0, 0));
        assert_after(&hours, &friday, 90, &at(ISTANBUL, (2026, 3, 7), 0, 30));
    }

    #[test]
    fn spring_forward_day_counts_real_minutes() {
        // 2026-03-29, Amsterdam: 02:00 CET jumps to 03:00 CEST, so 01:00-05:00 holds 3 hours.
        let hours = hours(AMSTERDAM, &["sunday"], &["01:00-05:00"], &[]);
        let sunday = at(AMSTERDAM, (2026, 3, 29), 1, 0);
        assert_after(&hours, &sunday, 120, &at(AMSTERDAM, (2026, 3, 29), 4, 0));
        assert_after(&hours, &sunday, 180, &at(AMSTERDAM, (2026, 3, 29), 5, 0));
        assert_after(&hours, &sunday, 181, &at(AMSTERDAM, (2026, 4, 5), 1, 1));
    }

    #[test]
    fn fall_back_day_counts_real_minutes() {
        // 2026-10-25, Amsterdam: 03:00 CEST goes back to 02:00 CET, a 25-hour day.
        let hours = hours(AMSTERDAM, &["sunday"], &["00:00-24:00"], &[]);
        let sunday = at(AMSTERDAM, (2026, 10, 25), 0, 0);
        assert_after(&hours, &sunday, 24 * 60, &at(AMSTERDAM, (2026, 10, 25), 23, 0));
        assert_after(&hours, &sunday, 25 * 60, &at(AMSTERDAM, (2026, 10, 26), 0, 0));
    }

    #[test]
    fn search_stops_after_about_two_years() {
        // Only Mondays open, and every Monday for three years a holiday.
        let mondays: Vec<String> = date(2026, 3, 9).series(1.week()).take(160).map(|day| day.to_string()).collect();
        let mondays: Vec<&str> = mondays.iter().map(String::as_str).collect();
        let hours = hours(ISTANBUL, &["monday"], &["09:00-18:00"], &mondays);
        let got = hours.after(at(ISTANBUL, (2026, 3, 9), 8, 0).timestamp(), 0);
        assert_eq!(got.to_string(), at(ISTANBUL, (2028, 3, 9), 0, 0).to_string());
    }

    #[test]
    fn valid_config_has_no_problems() {
        let config = config(ISTANBUL, &WORKDAYS, &["09:00-12:00", "12:00 - 18:00"], &["2026-01-01"]);
        assert!(problem_keys(&config).is_empty(), "{:?}", problem_keys(&config));
        assert_eq!(BusinessHours::new(&config).unwrap().time_zone().iana_name(), Some(ISTANBUL));
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let mut config = config("Mars/Olympus", &["monday"], &["09:00-18:00"], &["2026-13-01", "2026-01-01"]);
        let bad_days = [
            ("mondai", "09:00-18:00"),
            ("tuesday", "18:00-09:00"),
            ("wednesday", "9-5"),
            ("thursday", "10:00-10:00"),
        ];
        for (day, span) in bad_days {
            config.week.insert(day.to_owned(), vec![span.to_owned()]);
        }
        let want = [
            "p.timezone",
            "p.week.mondai",
            "p.week.thursday",
            "p.week.tuesday",
            "p.week.wednesday",
            "p.holidays",
        ];
        assert_eq!(problem_keys(&config), want);
        let reason = BusinessHours::new(&config).unwrap_err();
        assert!(reason.contains("business_hours.timezone: `Mars/Olympus`"), "{reason}");
        assert!(reason.contains("business_hours.week.mondai: unknown weekday"), "{reason}");
    }

    #[test]
    fn open_inside_a_span_closed_outside_it_and_on_a_holiday() {
        let hours = BusinessHours::new(&config(ISTANBUL, &["monday"], &["09:00-18:00"], &["2026-12-14"])).unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        // Istanbul is UTC+3: Monday 2026-12-07 10:00 there is 07:00 UTC.
        assert!(hours.is_open(at("2026-12-07T07:00:00Z")));
        assert!(!hours.is_open(at("2026-12-07T05:59:59Z")), "08:59 in Istanbul");
        assert!(!hours.is_open(at("2026-12-07T15:00:00Z")), "18:00 in Istanbul: the span's end");
        assert!(!hours.is_open(at("2026-12-14T07:00:00Z")), "a holiday");
        assert!(!hours.is_open(at("2026-12-08T07:00:00Z")), "a Tuesday");
    }

    #[test]
    fn overlapping_spans_are_a_problem() {
        let config = config(ISTANBUL, &["monday"], &["11:00-13:00", "09:00-12:00"], &[]);
        assert_eq!(problem_keys(&config), ["p.week.monday"]);
        assert!(
            BusinessHours::new(&config)
                .unwrap_err()
                .contains("09:00-12:00 and 11:00-13:00 overlap")
        );
    }

    #[test]
    fn twenty_four_is_only_an_end() {
        assert_eq!(
            problem_keys(&config(ISTANBUL, &["monday"], &["24:00-24:00", "09:00-10:00"], &[])),
            ["p.week.monday"]
        );
        assert!(problem_keys(&config(ISTANBUL, &["monday"], &["00:00-24:00"], &[])).is_empty());
    }

    #[test]
    fn all_closed_week_is_a_problem() {
        let closed = config(ISTANBUL, &WORKDAYS, &[], &[]);
        assert_eq!(problem_keys(&closed), ["p.week"]);
        assert!(BusinessHours::new(&closed).is_err());
    }

    /// `hours.open_between(from, to)` in whole minutes.
    fn open_minutes(hours: &BusinessHours, from: &ZonedDateTime, to: &ZonedDateTime) -> i64 {
        hours.open_between(from.timestamp(), to.timestamp()).as_mins()
    }

    #[test]
    fn open_time_between_two_moments_skips_nights_weekends_and_holidays() {
        let office = office();
        let friday = at(ISTANBUL, (2026, 3, 6), 17, 0);
        assert_eq!(open_minutes(&office, &friday, &at(ISTANBUL, (2026, 3, 9), 10, 0)), 120);
        assert_eq!(open_minutes(&office, &friday, &at(ISTANBUL, (2026, 3, 6), 17, 45)), 45);
        // Asked and answered while closed: no business time passed.
        let saturday = at(ISTANBUL, (2026, 3, 7), 12, 0);
        assert_eq!(open_minutes(&office, &saturday, &at(ISTANBUL, (2026, 3, 8), 23, 0)), 0);
        // Reversed: zero, never negative.
        assert_eq!(open_minutes(&office, &at(ISTANBUL, (2026, 3, 9), 10, 0), &friday), 0);
        let holiday = hours(ISTANBUL, &WORKDAYS, &["09:00-18:00"], &["2026-03-09"]);
        assert_eq!(open_minutes(&holiday, &friday, &at(ISTANBUL, (2026, 3, 10), 10, 0)), 120);
        // A span on the day the clocks move forward holds three hours.
        let night = hours(AMSTERDAM, &["sunday"], &["01:00-05:00"], &[]);
        let sunday = at(AMSTERDAM, (2026, 3, 29), 0, 0);
        assert_eq!(open_minutes(&night, &sunday, &at(AMSTERDAM, (2026, 3, 29), 6, 0)), 180);
    }

    #[test]
    fn open_time_undoes_after() {
        let hours = hours(ISTANBUL, &WORKDAYS, &["13:00-18:00", "09:00-12:00"], &["2026-03-11"]);
        let mut from = at(ISTANBUL, (2026, 3, 6), 8, 17);
        for minutes in [0, 1, 59, 120, 181, 480, 600, 1000, 2400, 5000] {
            let until = hours.after(from.timestamp(), minutes);
            assert_eq!(open_minutes(&hours, &from, &until), i64::from(minutes), "{from} + {minutes}");
            from = from.checked_add(jiff::SignedDuration::from_mins(437)).unwrap();
        }
    }
}
