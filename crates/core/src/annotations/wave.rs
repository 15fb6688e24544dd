/// Why a wave annotation was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaveParseError {
    #[error("wave is empty")]
    Empty,
    #[error(
        "wave {0:?} is not a whole number (Argo CD sync waves are integers such as \"3\" or \"-1\")"
    )]
    NotAnInteger(String),
}

/// Parses an Argo CD sync wave (`argocd.argoproj.io/sync-wave`, `mlops.dev/block-wave`): an
/// integer, possibly negative, with surrounding whitespace allowed as Argo CD allows it.
pub fn parse_wave(value: &str) -> Result<i32, WaveParseError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(WaveParseError::Empty);
    }
    let shown: String = trimmed.chars().take(40).collect();
    trimmed
        .parse::<i32>()
        .map_err(|_| WaveParseError::NotAnInteger(shown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_argocd_waves() {
        assert_eq!(parse_wave("3"), Ok(3));
        assert_eq!(parse_wave(" -1 "), Ok(-1));
        assert_eq!(parse_wave("+2"), Ok(2));
        assert_eq!(parse_wave(""), Err(WaveParseError::Empty));
        assert!(matches!(
            parse_wave("three"),
            Err(WaveParseError::NotAnInteger(_))
        ));
        assert!(matches!(
            parse_wave("1.5"),
            Err(WaveParseError::NotAnInteger(_))
        ));
        assert!(matches!(
            parse_wave("99999999999"),
            Err(WaveParseError::NotAnInteger(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,64}") { let _ = parse_wave(&s); }

        #[test]
        fn round_trips(n in any::<i32>()) { prop_assert_eq!(parse_wave(&n.to_string()), Ok(n)); }
    }
}
