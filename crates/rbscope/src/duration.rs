//! Durations on the command line: `500ms`, `30s`, `15m`, `2h`, `7d`, `1w`.

/// Milliseconds in a duration like `2h`; a bare number means seconds.
pub fn parse_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if unit == "ms" {
        return num
            .parse()
            .map_err(|_| format!("{text:?} is not a duration (try 500ms, 30s, 15m, 2h, 7d)"));
    }
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 30s, 15m, 2h, 7d)"))?;
    let unit_ms = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit (use s, m, h, d or w)"
            ))
        }
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn parses() {
        assert_eq!(parse_ms("30s"), Ok(30_000));
        assert_eq!(parse_ms("15m"), Ok(900_000));
        assert_eq!(parse_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_ms("7d"), Ok(604_800_000));
        assert_eq!(parse_ms("45"), Ok(45_000));
        assert_eq!(parse_ms("250ms"), Ok(250));
        assert!(parse_ms("xms").is_err());
        assert!(parse_ms("soon").is_err());
        assert!(parse_ms("3y").is_err());
    }
}
