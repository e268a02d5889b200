//! Points in time as ECS reports them.
//!
//! ECS events carry ISO-8601 strings with zero to three fractional digits
//! (`2020-01-23T17:57:58Z`, `2016-12-06T16:41:06.991Z`); the ECS API carries
//! epoch seconds as a number with a fraction. [`Timestamp`] accepts both and
//! serializes as an RFC 3339 string with millisecond precision.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant with millisecond precision, stored as milliseconds since the
/// Unix epoch (8 bytes, `Copy`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// Why a value is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {input:?}: expected RFC 3339 (e.g. 2020-01-23T17:57:58.103Z)")]
pub struct TimestampError {
    /// The rejected input (truncated to 64 characters).
    pub input: String,
}

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// From (possibly fractional) seconds since the Unix epoch, as the ECS API
    /// reports them. Non-finite values are rejected.
    pub fn from_epoch_seconds(secs: f64) -> Option<Self> {
        if !secs.is_finite() || secs.abs() > 1e14 {
            return None;
        }
        Some(Timestamp((secs * 1000.0).round() as i64))
    }

    /// The current time.
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Timestamp((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// Parses an RFC 3339 string (any number of fractional digits, `Z` or an
    /// offset).
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError {
            input: s.chars().take(64).collect(),
        };
        let t = OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| err())?;
        Ok(Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// This instant plus `d` (saturating).
    pub fn plus(self, d: std::time::Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// Time elapsed from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.0 - earlier.0).unwrap_or(0))
    }
}

impl Timestamp {
    /// Writes the RFC 3339 form (`2016-12-06T16:41:06.991Z`) into `buf`; `None`
    /// for instants outside the years 0000-9999.
    ///
    /// The calendar comes from `time`; only the fixed-width digits are
    /// written here. `time`'s own ISO 8601 formatter took about 1.7 times as
    /// long per timestamp, some 6 points more of the time to encode a task
    /// for the HTTP API (three timestamps each); see `benches/RESULTS.md`,
    /// `timestamp_format`.
    fn rfc3339(self, buf: &mut [u8; 24]) -> Option<&str> {
        let t = OffsetDateTime::from_unix_timestamp(self.0.div_euclid(1000)).ok()?;
        let (year, month, day) = t.to_calendar_date();
        let year = u32::try_from(year).ok().filter(|y| *y <= 9999)?;
        let (hour, minute, second) = t.to_hms();
        let millis = u32::try_from(self.0.rem_euclid(1000)).ok()?;
        let fields = [
            (0, 4, year),
            (5, 2, u32::from(u8::from(month))),
            (8, 2, u32::from(day)),
            (11, 2, u32::from(hour)),
            (14, 2, u32::from(minute)),
            (17, 2, u32::from(second)),
            (20, 3, millis),
        ];
        *buf = *b"0000-00-00T00:00:00.000Z";
        for (start, len, mut value) in fields {
            for digit in buf[start..start + len].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        std::str::from_utf8(buf).ok()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 24];
        match self.rfc3339(&mut buf) {
            Some(s) => f.write_str(s),
            None => write!(f, "@{}ms", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 24];
        match self.rfc3339(&mut buf) {
            Some(text) => s.serialize_str(text),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string or epoch seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timestamp, E> {
                Timestamp::from_epoch_seconds(v)
                    .ok_or_else(|| E::custom(format!("epoch seconds out of range: {v}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_to_three_fractional_digits_parse() {
        let base = Timestamp::parse("2020-01-23T17:57:58Z").unwrap();
        assert_eq!(
            Timestamp::parse("2020-01-23T17:57:58.1Z")
                .unwrap()
                .as_millis(),
            base.as_millis() + 100
        );
        assert_eq!(
            Timestamp::parse("2020-01-23T17:57:58.12Z")
                .unwrap()
                .as_millis(),
            base.as_millis() + 120
        );
        assert_eq!(
            Timestamp::parse("2020-01-23T17:57:58.123Z")
                .unwrap()
                .as_millis(),
            base.as_millis() + 123
        );
        assert_eq!(base.as_millis(), 1_579_802_278_000);
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let a = Timestamp::parse("2020-01-23T18:57:58+01:00").unwrap();
        let b = Timestamp::parse("2020-01-23T17:57:58Z").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn display_round_trips_with_millis() {
        let t = Timestamp::parse("2016-12-06T16:41:06.991Z").unwrap();
        assert_eq!(t.to_string(), "2016-12-06T16:41:06.991Z");
        assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn display_matches_the_time_crate_across_the_calendar() {
        // Leap years, century rules, month ends, pre-1970 and far future.
        let mut ms: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
        let end: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let mut step: i64 = 86_399_997;
        while ms <= end {
            let t = Timestamp::from_millis(ms);
            let expected = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .map(|d| {
                    format!(
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                        d.year(),
                        u8::from(d.month()),
                        d.day(),
                        d.hour(),
                        d.minute(),
                        d.second(),
                        d.millisecond()
                    )
                })
                .unwrap();
            assert_eq!(t.to_string(), expected, "{ms}");
            assert_eq!(Timestamp::parse(&expected).unwrap(), t);
            ms += step;
            step = step * 7 % 9_000_000_000 + 1;
        }
        assert_eq!(
            Timestamp::from_millis(end).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            Timestamp::from_millis(end + 1).to_string(),
            format!("@{}ms", end + 1)
        );
        assert_eq!(
            Timestamp::from_millis(-1).to_string(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn serializes_as_the_display_string() {
        let t = Timestamp::parse("2000-02-29T23:59:59.001Z").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2000-02-29T23:59:59.001Z\""
        );
    }

    #[test]
    fn epoch_seconds_from_the_api_deserialize() {
        let t: Timestamp = serde_json::from_str("1579802278.103").unwrap();
        assert_eq!(t.as_millis(), 1_579_802_278_103);
        let t: Timestamp = serde_json::from_str("1579802278").unwrap();
        assert_eq!(t.as_millis(), 1_579_802_278_000);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "yesterday",
            "2020-13-01T00:00:00Z",
            "2020-01-01",
            "2020-01-01T25:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Timestamp>("true").is_err());
        assert!(serde_json::from_str::<Timestamp>("1e300").is_err());
    }
}
