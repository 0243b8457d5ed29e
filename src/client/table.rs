//! A two-column report of an answer for a person: every field that carries
//! something, by its path, in the answer's order. Durations read `2h 03m`,
//! numbers are rounded to two decimals, score counts are labelled by score,
//! and empty text and unset enums (`CHANNEL_UNSPECIFIED`) are left out.

use serde_json::Value;

/// The table of a JSON answer (as [`super::json::message`] writes it).
pub fn table(value: &Value) -> String {
    let mut rows = Vec::new();
    flatten("", value, &mut rows);
    let width = rows.iter().map(|(path, _)| path.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (path, value) in rows {
        out.push_str(&format!("{path:<width$}  {value}\n"));
    }
    out
}

fn flatten(path: &str, value: &Value, rows: &mut Vec<(String, String)>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    let key = path.rsplit('.').next().unwrap_or(path);
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                flatten(&join(key), value, rows);
            }
        }
        // Index 0 holds the count of the lowest score, 1 for CSAT and CES.
        Value::Array(items) if key == "score_counts" => {
            for (index, item) in items.iter().enumerate() {
                flatten(&format!("{path}[score {}]", index + 1), item, rows);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                flatten(&format!("{path}[{index}]"), item, rows);
            }
        }
        Value::Null => {}
        Value::String(text) if text.is_empty() || text.ends_with("_UNSPECIFIED") => {}
        Value::String(text) => rows.push((path.to_owned(), shown_text(key, text))),
        Value::Number(number) => {
            let shown = match number.as_f64() {
                Some(seconds) if key.ends_with("_seconds") => duration(seconds),
                Some(x) if number.is_f64() => rounded(x),
                _ => number.to_string(),
            };
            rows.push((path.to_owned(), shown));
        }
        Value::Bool(b) => rows.push((path.to_owned(), b.to_string())),
    }
}

/// 64-bit counts arrive as strings ("12"); a duration field as "900s".
fn shown_text(key: &str, text: &str) -> String {
    match text.strip_suffix('s').and_then(|s| s.parse::<f64>().ok()) {
        Some(seconds) if !key.ends_with("_id") => duration(seconds),
        _ => text.to_owned(),
    }
}

/// A number rounded to at most two decimals, trailing zeros dropped.
pub fn rounded(x: f64) -> String {
    let text = format!("{x:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// Seconds as a person reads them, rounded to the last unit shown: `42s`,
/// `12m 05s`, `2h 03m`, `3d 04h`.
pub fn duration(seconds: f64) -> String {
    if seconds < 0.0 {
        return format!("-{}", duration(-seconds));
    }
    if seconds < 60.0 {
        return format!("{}s", rounded(seconds));
    }
    let whole_seconds = seconds.round() as u64;
    if whole_seconds < 3600 {
        return format!("{}m {:02}s", whole_seconds / 60, whole_seconds % 60);
    }
    let whole_minutes = (seconds / 60.0).round() as u64;
    if whole_minutes < 24 * 60 {
        return format!("{}h {:02}m", whole_minutes / 60, whole_minutes % 60);
    }
    let whole_hours = (seconds / 3600.0).round() as u64;
    format!("{}d {:02}h", whole_hours / 24, whole_hours % 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(duration(7722.4), "2h 09m");
        assert_eq!(duration(7380.0), "2h 03m");
        assert_eq!(duration(42.25), "42.25s");
        assert_eq!(duration(600.0), "10m 00s");
        assert_eq!(duration(219_600.0), "2d 13h");
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(3599.6), "1h 00m");
        assert_eq!(duration(86_399.0), "1d 00h");
    }

    #[test]
    fn numbers_are_rounded_to_two_decimals() {
        assert_eq!(rounded(66.666_666), "66.67");
        assert_eq!(rounded(100.0), "100");
        assert_eq!(rounded(4.5), "4.5");
        assert_eq!(rounded(-0.001), "0");
    }

    #[test]
    fn the_table_labels_scores_and_leaves_out_what_is_not_there() {
        let answer = serde_json::json!({
            "scope": {"kind": "TEAM", "team_id": "billing", "agent_id": "", "channel": "CHANNEL_UNSPECIFIED"},
            "previous": null,
            "metrics": {
                "tickets_created": "5",
                "fcr_rate_percent": 66.66666666666667,
                "first_response_time": {"mean_seconds": 7722411.3},
                "csat": {"score_counts": ["0", "1", "0", "0", "3"]},
                "within": "1800s"
            }
        });
        let text = table(&answer);
        assert!(
            !text.contains("UNSPECIFIED") && !text.contains("agent_id"),
            "{text}"
        );
        assert!(!text.contains("previous"), "{text}");
        assert!(text.contains("metrics.fcr_rate_percent"), "{text}");
        assert!(text.contains("66.67\n"), "{text}");
        assert!(text.contains("89d 09h"), "{text}");
        let row = |path: &str| {
            text.lines()
                .find(|line| line.starts_with(&format!("{path} ")))
                .map(|line| line[path.len()..].trim().to_owned())
        };
        assert_eq!(
            row("metrics.csat.score_counts[score 5]").as_deref(),
            Some("3")
        );
        assert_eq!(
            row("metrics.csat.score_counts[score 1]").as_deref(),
            Some("0")
        );
        assert!(text.contains("metrics.tickets_created"), "{text}");
        assert!(text.contains("30m 00s"), "{text}");
    }
}
