//! Go-style duration strings (`30m`, `1h30m`, `1.5s`, `250ms`), the format of `spec.timeout`.

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration is empty")]
    Empty,
    #[error(
        "duration {0:?} must be numbers with units ms, s, m or h, such as \"30m\" or \"1h30m\""
    )]
    Malformed(String),
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

/// Parses the subset of Go's `time.ParseDuration` that the CRD's pattern admits:
/// `^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(input.to_string());
    let bytes = input.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &input[start..i];
        if number.is_empty()
            || number.starts_with('.')
            || number.ends_with('.')
            || number.matches('.').count() > 1
        {
            return Err(malformed());
        }
        let value: f64 = number.parse().map_err(|_| malformed())?;
        let unit_seconds = if input[i..].starts_with("ms") {
            i += 2;
            0.001
        } else if input[i..].starts_with('s') {
            i += 1;
            1.0
        } else if input[i..].starts_with('m') {
            i += 1;
            60.0
        } else if input[i..].starts_with('h') {
            i += 1;
            3600.0
        } else {
            return Err(malformed());
        };
        total += value * unit_seconds;
    }
    // A year is far beyond any sensible validation timeout; larger values are typos.
    if !total.is_finite() || total > 366.0 * 24.0 * 3600.0 {
        return Err(DurationError::TooLarge(input.to_string()));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_forms_the_crd_admits() {
        assert_eq!(parse_go_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("2m10s"), Ok(Duration::from_secs(130)));
    }

    #[test]
    fn rejects_what_the_crd_rejects() {
        for bad in [
            "", "10", "m", "1d", "1.s", ".5s", "1..2s", "5 m", "-1s", "1h 2m",
        ] {
            assert!(
                parse_go_duration(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(matches!(
            parse_go_duration("99999999h"),
            Err(DurationError::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,40}") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn minutes_round_trip(m in 0u32..100_000) {
            prop_assert_eq!(parse_go_duration(&format!("{m}m")), Ok(Duration::from_secs(u64::from(m) * 60)));
        }
    }
}
