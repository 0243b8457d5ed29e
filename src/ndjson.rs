//! The backup format: NDJSON, one item per line, each line the protobuf JSON
//! form of an `ExportItem`'s content: `{"interaction": {...}}`,
//! `{"survey_response": {...}}`, `{"quality_review": {...}}`,
//! `{"customer_event": {...}}`, `{"targets": {"team_id": ..., "targets": [...]}}`
//! or `{"calendar": {"team_id": ..., "effective_from": ..., "calendar": {...},
//! "sla_policy": {"targets": [...]}}}` (a version of a team's terms).
//! Field names are the .proto names; timestamps are RFC 3339, durations `"900s"`,
//! enums their names. This is also the format of the worked example.

use chrono::{DateTime, SecondsFormat, Utc};
use prost_types::{Duration, Timestamp};
use serde_json::{json, Map, Value};

use crate::proto::v1 as pb;

/// One backup item as a single JSON line (no trailing newline).
pub fn to_line(item: &pb::ExportItem) -> String {
    let value = match &item.item {
        Some(pb::export_item::Item::Record(record)) => record_value(record),
        Some(pb::export_item::Item::Targets(targets)) => {
            json!({ "targets": targets_value(targets) })
        }
        Some(pb::export_item::Item::Calendar(version)) => {
            json!({ "calendar": calendar_version_value(version) })
        }
        None => json!({}),
    };
    value.to_string()
}

/// Parses one line; the error says what is wrong, naming the field.
pub fn from_line(line: &str) -> Result<pb::ExportItem, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let object = value.as_object().ok_or("must be a JSON object")?;
    if object.len() != 1 {
        return Err(
            "must hold exactly one of interaction, survey_response, quality_review, \
                    customer_event, targets, calendar"
                .into(),
        );
    }
    let (kind, body) = object.iter().next().ok_or("is empty")?;
    let body = Object::new(kind, body)?;
    let item = match kind.as_str() {
        "targets" => pb::export_item::Item::Targets(parse_targets(&body)?),
        "calendar" => pb::export_item::Item::Calendar(parse_calendar_version(&body)?),
        _ => pb::export_item::Item::Record(pb::Record {
            record: Some(parse_record(kind, &body)?),
        }),
    };
    body.reject_unknown()?;
    Ok(pb::ExportItem { item: Some(item) })
}

/// A record as the JSON line of the format.
pub fn record_to_line(record: &pb::Record) -> String {
    record_value(record).to_string()
}

/// Parses a line that must be a record.
pub fn record_from_line(line: &str) -> Result<pb::Record, String> {
    match from_line(line)?.item {
        Some(pb::export_item::Item::Record(record)) => Ok(record),
        _ => Err("must be a record, not targets".into()),
    }
}

fn record_value(record: &pb::Record) -> Value {
    use pb::record::Record as R;
    let mut fields = Map::new();
    let kind = match &record.record {
        Some(R::Interaction(i)) => {
            put_str(&mut fields, "interaction_id", &i.interaction_id);
            fields.insert("revision".into(), json!(i.revision));
            put_str(&mut fields, "ticket_id", &i.ticket_id);
            put_str(&mut fields, "team_id", &i.team_id);
            put_str(&mut fields, "agent_id", &i.agent_id);
            put_str(&mut fields, "customer_id", &i.customer_id);
            put_enum(
                &mut fields,
                "channel",
                pb::Channel::try_from(i.channel)
                    .ok()
                    .map(|c| c.as_str_name()),
                i.channel,
            );
            put_enum(
                &mut fields,
                "priority",
                pb::Priority::try_from(i.priority)
                    .ok()
                    .map(|c| c.as_str_name()),
                i.priority,
            );
            put_time(&mut fields, "opened_at", i.opened_at.as_ref());
            put_time(
                &mut fields,
                "first_response_at",
                i.first_response_at.as_ref(),
            );
            put_time(&mut fields, "closed_at", i.closed_at.as_ref());
            if let Some(handle_time) = &i.handle_time {
                fields.insert("handle_time".into(), json!(duration_text(handle_time)));
            }
            if i.resolved {
                fields.insert("resolved".into(), json!(true));
            }
            if !i.tags.is_empty() {
                fields.insert("tags".into(), json!(i.tags));
            }
            if let Some(social) = &i.social {
                let mut s = Map::new();
                put_enum(
                    &mut s,
                    "kind",
                    pb::SocialKind::try_from(social.kind)
                        .ok()
                        .map(|k| k.as_str_name()),
                    social.kind,
                );
                s.insert("sentiment".into(), json!(social.sentiment));
                fields.insert("social".into(), Value::Object(s));
            }
            "interaction"
        }
        Some(R::SurveyResponse(s)) => {
            put_str(&mut fields, "response_id", &s.response_id);
            fields.insert("revision".into(), json!(s.revision));
            put_str(&mut fields, "interaction_id", &s.interaction_id);
            put_enum(
                &mut fields,
                "kind",
                pb::SurveyKind::try_from(s.kind)
                    .ok()
                    .map(|k| k.as_str_name()),
                s.kind,
            );
            fields.insert("score".into(), json!(s.score));
            put_time(&mut fields, "submitted_at", s.submitted_at.as_ref());
            put_str(&mut fields, "comment", &s.comment);
            "survey_response"
        }
        Some(R::QualityReview(r)) => {
            put_str(&mut fields, "review_id", &r.review_id);
            fields.insert("revision".into(), json!(r.revision));
            put_str(&mut fields, "interaction_id", &r.interaction_id);
            put_str(&mut fields, "reviewer_id", &r.reviewer_id);
            fields.insert("score".into(), json!(r.score));
            put_time(&mut fields, "reviewed_at", r.reviewed_at.as_ref());
            "quality_review"
        }
        Some(R::CustomerEvent(e)) => {
            put_str(&mut fields, "event_id", &e.event_id);
            fields.insert("revision".into(), json!(e.revision));
            put_str(&mut fields, "customer_id", &e.customer_id);
            put_enum(
                &mut fields,
                "kind",
                pb::CustomerEventKind::try_from(e.kind)
                    .ok()
                    .map(|k| k.as_str_name()),
                e.kind,
            );
            put_time(&mut fields, "occurred_at", e.occurred_at.as_ref());
            "customer_event"
        }
        None => return json!({}),
    };
    let mut line = Map::new();
    line.insert(kind.into(), Value::Object(fields));
    Value::Object(line)
}

fn targets_value(targets: &pb::SetTargetsRequest) -> Value {
    let mut fields = Map::new();
    put_str(&mut fields, "team_id", &targets.team_id);
    let list: Vec<Value> = targets
        .targets
        .iter()
        .map(|t| {
            let mut target = Map::new();
            put_enum(
                &mut target,
                "metric",
                pb::Metric::try_from(t.metric).ok().map(|m| m.as_str_name()),
                t.metric,
            );
            target.insert("value".into(), json!(t.value));
            Value::Object(target)
        })
        .collect();
    fields.insert("targets".into(), Value::Array(list));
    Value::Object(fields)
}

fn calendar_version_value(version: &pb::CalendarVersion) -> Value {
    let mut fields = Map::new();
    put_str(&mut fields, "team_id", &version.team_id);
    put_time(
        &mut fields,
        "effective_from",
        version.effective_from.as_ref(),
    );
    if let Some(calendar) = &version.calendar {
        let hours: Vec<Value> = calendar
            .hours
            .iter()
            .map(|h| {
                let mut shift = Map::new();
                put_enum(
                    &mut shift,
                    "weekday",
                    pb::Weekday::try_from(h.weekday)
                        .ok()
                        .map(|d| d.as_str_name()),
                    h.weekday,
                );
                put_str(&mut shift, "start", &h.start);
                put_str(&mut shift, "end", &h.end);
                Value::Object(shift)
            })
            .collect();
        fields.insert(
            "calendar".into(),
            json!({
                "time_zone": calendar.time_zone,
                "hours": hours,
                "holidays": calendar.holidays,
            }),
        );
    }
    if let Some(policy) = &version.sla_policy {
        let targets: Vec<Value> = policy
            .targets
            .iter()
            .map(|t| {
                let mut target = Map::new();
                put_enum(
                    &mut target,
                    "priority",
                    pb::Priority::try_from(t.priority)
                        .ok()
                        .map(|p| p.as_str_name()),
                    t.priority,
                );
                put_enum(
                    &mut target,
                    "metric",
                    pb::SlaMetric::try_from(t.metric)
                        .ok()
                        .map(|m| m.as_str_name()),
                    t.metric,
                );
                if let Some(within) = &t.within {
                    target.insert("within".into(), json!(duration_text(within)));
                }
                put_enum(
                    &mut target,
                    "clock",
                    pb::SlaClock::try_from(t.clock)
                        .ok()
                        .map(|c| c.as_str_name()),
                    t.clock,
                );
                Value::Object(target)
            })
            .collect();
        fields.insert("sla_policy".into(), json!({ "targets": targets }));
    }
    Value::Object(fields)
}

fn parse_calendar_version(o: &Object<'_>) -> Result<pb::CalendarVersion, String> {
    let calendar = match o.object("calendar")? {
        None => None,
        Some(c) => {
            let list = |field: &'static str| match c.get(field) {
                None => Ok(Vec::new()),
                Some(Value::Array(list)) => Ok(list.iter().collect::<Vec<_>>()),
                Some(_) => Err(format!("{}: must be a list", c.name(field))),
            };
            let hours = list("hours")?
                .into_iter()
                .enumerate()
                .map(|(index, value)| {
                    let shift = Object::new(&format!("{}[{index}]", c.name("hours")), value)?;
                    let parsed = pb::WorkingHours {
                        weekday: shift.enumeration("weekday", |n| {
                            pb::Weekday::from_str_name(n).map(|d| d as i32)
                        })?,
                        start: shift.string("start")?,
                        end: shift.string("end")?,
                    };
                    shift.reject_unknown()?;
                    Ok(parsed)
                })
                .collect::<Result<_, String>>()?;
            let holidays = list("holidays")?
                .into_iter()
                .enumerate()
                .map(|(index, value)| {
                    value
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{}[{index}]: must be a string", c.name("holidays")))
                })
                .collect::<Result<_, String>>()?;
            let parsed = pb::BusinessCalendar {
                time_zone: c.string("time_zone")?,
                hours,
                holidays,
            };
            c.reject_unknown()?;
            Some(parsed)
        }
    };
    let sla_policy = match o.object("sla_policy")? {
        None => None,
        Some(p) => {
            let targets = match p.get("targets") {
                None => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .enumerate()
                    .map(|(index, value)| {
                        let t = Object::new(&format!("{}[{index}]", p.name("targets")), value)?;
                        let parsed = pb::SlaTarget {
                            priority: t.enumeration("priority", |n| {
                                pb::Priority::from_str_name(n).map(|p| p as i32)
                            })?,
                            metric: t.enumeration("metric", |n| {
                                pb::SlaMetric::from_str_name(n).map(|m| m as i32)
                            })?,
                            within: t.duration("within")?,
                            clock: t.enumeration("clock", |n| {
                                pb::SlaClock::from_str_name(n).map(|c| c as i32)
                            })?,
                        };
                        t.reject_unknown()?;
                        Ok(parsed)
                    })
                    .collect::<Result<_, String>>()?,
                Some(_) => return Err(format!("{}: must be a list", p.name("targets"))),
            };
            p.reject_unknown()?;
            Some(pb::SlaPolicy { targets })
        }
    };
    Ok(pb::CalendarVersion {
        team_id: o.string("team_id")?,
        effective_from: o.time("effective_from")?,
        calendar,
        sla_policy,
    })
}

fn put_str(fields: &mut Map<String, Value>, name: &str, value: &str) {
    if !value.is_empty() {
        fields.insert(name.into(), json!(value));
    }
}

fn put_enum(fields: &mut Map<String, Value>, name: &str, known: Option<&str>, number: i32) {
    if number != 0 {
        let value = known.map_or_else(|| json!(number), |name| json!(name));
        fields.insert(name.into(), value);
    }
}

fn put_time(fields: &mut Map<String, Value>, name: &str, value: Option<&Timestamp>) {
    if let Some(value) = value {
        fields.insert(name.into(), json!(timestamp_text(value)));
    }
}

/// RFC 3339 in UTC, with as many fractional digits as needed.
pub fn timestamp_text(value: &Timestamp) -> String {
    match u32::try_from(value.nanos)
        .ok()
        .and_then(|nanos| DateTime::<Utc>::from_timestamp(value.seconds, nanos))
    {
        Some(time) => time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        // Out of chrono's range: the validator rejects it anyway; keep it visible.
        None => format!("{}.{:09}s-since-epoch", value.seconds, value.nanos),
    }
}

/// Seconds with up to nine fractional digits and an `s`, as protobuf JSON does.
pub fn duration_text(value: &Duration) -> String {
    if value.nanos == 0 {
        format!("{}s", value.seconds)
    } else {
        let sign = if value.seconds < 0 || value.nanos < 0 {
            "-"
        } else {
            ""
        };
        let fraction = format!("{:09}", value.nanos.unsigned_abs());
        format!(
            "{sign}{}.{}s",
            value.seconds.unsigned_abs(),
            fraction.trim_end_matches('0')
        )
    }
}

/// A JSON object being read, which remembers the fields consumed so that
/// unknown (misspelt) fields are reported rather than silently dropped.
struct Object<'a> {
    path: String,
    fields: &'a Map<String, Value>,
    seen: std::cell::RefCell<Vec<&'a str>>,
}

impl<'a> Object<'a> {
    fn new(path: &str, value: &'a Value) -> Result<Object<'a>, String> {
        let fields = value
            .as_object()
            .ok_or_else(|| format!("{path}: must be a JSON object"))?;
        Ok(Object {
            path: path.to_owned(),
            fields,
            seen: std::cell::RefCell::new(Vec::new()),
        })
    }

    fn name(&self, field: &str) -> String {
        format!("{}.{field}", self.path)
    }

    fn get(&self, field: &'a str) -> Option<&'a Value> {
        self.seen.borrow_mut().push(field);
        self.fields.get(field).filter(|value| !value.is_null())
    }

    fn string(&self, field: &'a str) -> Result<String, String> {
        match self.get(field) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("{}: must be a string", self.name(field))),
        }
    }

    fn unsigned(&self, field: &'a str) -> Result<u64, String> {
        match self.get(field) {
            None => Ok(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| format!("{}: must be a whole number ≥ 0", self.name(field))),
            // Protobuf JSON writes 64-bit integers as strings.
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| format!("{}: must be a whole number ≥ 0", self.name(field))),
            Some(_) => Err(format!("{}: must be a number", self.name(field))),
        }
    }

    fn small_unsigned(&self, field: &'a str) -> Result<u32, String> {
        u32::try_from(self.unsigned(field)?)
            .map_err(|_| format!("{}: is too large", self.name(field)))
    }

    fn float(&self, field: &'a str) -> Result<f64, String> {
        match self.get(field) {
            None => Ok(0.0),
            Some(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| format!("{}: must be a number", self.name(field))),
            Some(_) => Err(format!("{}: must be a number", self.name(field))),
        }
    }

    fn boolean(&self, field: &'a str) -> Result<bool, String> {
        match self.get(field) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("{}: must be true or false", self.name(field))),
        }
    }

    fn enumeration(
        &self,
        field: &'a str,
        from_name: fn(&str) -> Option<i32>,
    ) -> Result<i32, String> {
        match self.get(field) {
            None => Ok(0),
            Some(Value::String(s)) => from_name(s)
                .ok_or_else(|| format!("{}: {s:?} is not a known value", self.name(field))),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| format!("{}: is not a known value", self.name(field))),
            Some(_) => Err(format!("{}: must be a name", self.name(field))),
        }
    }

    fn time(&self, field: &'a str) -> Result<Option<Timestamp>, String> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| {
                    Some(Timestamp {
                        seconds: t.timestamp(),
                        nanos: t.timestamp_subsec_nanos() as i32,
                    })
                })
                .map_err(|_| format!("{}: {s:?} is not an RFC 3339 time", self.name(field))),
            Some(_) => Err(format!("{}: must be an RFC 3339 string", self.name(field))),
        }
    }

    fn duration(&self, field: &'a str) -> Result<Option<Duration>, String> {
        let bad = || {
            format!(
                "{}: must be seconds like \"900s\" or \"1.5s\"",
                self.name(field)
            )
        };
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let text = value.as_str().ok_or_else(bad)?;
        let number = text.strip_suffix('s').ok_or_else(bad)?;
        let negative = number.starts_with('-');
        let (whole, fraction) = number
            .trim_start_matches('-')
            .split_once('.')
            .unwrap_or((number.trim_start_matches('-'), ""));
        if whole.is_empty() || fraction.len() > 9 || !fraction.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let seconds: i64 = whole.parse().map_err(|_| bad())?;
        let nanos: i32 = format!("{fraction:0<9}").parse().map_err(|_| bad())?;
        let sign = if negative { -1 } else { 1 };
        Ok(Some(Duration {
            seconds: sign * seconds,
            nanos: sign as i32 * nanos,
        }))
    }

    fn object(&self, field: &'a str) -> Result<Option<Object<'a>>, String> {
        self.get(field)
            .map(|value| Object::new(&self.name(field), value))
            .transpose()
    }

    fn reject_unknown(&self) -> Result<(), String> {
        let seen = self.seen.borrow();
        match self.fields.keys().find(|k| !seen.contains(&k.as_str())) {
            Some(unknown) => Err(format!("{}: unknown field", self.name(unknown))),
            None => Ok(()),
        }
    }
}

fn parse_record(kind: &str, o: &Object<'_>) -> Result<pb::record::Record, String> {
    use pb::record::Record as R;
    Ok(match kind {
        "interaction" => {
            let social = match o.object("social")? {
                None => None,
                Some(s) => {
                    let facts = pb::SocialFacts {
                        kind: s.enumeration("kind", |n| {
                            pb::SocialKind::from_str_name(n).map(|k| k as i32)
                        })?,
                        sentiment: s.float("sentiment")?,
                    };
                    s.reject_unknown()?;
                    Some(facts)
                }
            };
            let tags = match o.get("tags") {
                None => Vec::new(),
                Some(Value::Array(tags)) => tags
                    .iter()
                    .map(|t| t.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("{}: must be strings", o.name("tags")))?,
                Some(_) => return Err(format!("{}: must be a list", o.name("tags"))),
            };
            R::Interaction(pb::Interaction {
                interaction_id: o.string("interaction_id")?,
                revision: o.unsigned("revision")?,
                ticket_id: o.string("ticket_id")?,
                team_id: o.string("team_id")?,
                agent_id: o.string("agent_id")?,
                customer_id: o.string("customer_id")?,
                channel: o.enumeration("channel", |n| {
                    pb::Channel::from_str_name(n).map(|c| c as i32)
                })?,
                priority: o.enumeration("priority", |n| {
                    pb::Priority::from_str_name(n).map(|p| p as i32)
                })?,
                opened_at: o.time("opened_at")?,
                first_response_at: o.time("first_response_at")?,
                closed_at: o.time("closed_at")?,
                handle_time: o.duration("handle_time")?,
                resolved: o.boolean("resolved")?,
                tags,
                social,
            })
        }
        "survey_response" => R::SurveyResponse(pb::SurveyResponse {
            response_id: o.string("response_id")?,
            revision: o.unsigned("revision")?,
            interaction_id: o.string("interaction_id")?,
            kind: o.enumeration("kind", |n| {
                pb::SurveyKind::from_str_name(n).map(|k| k as i32)
            })?,
            score: o.small_unsigned("score")?,
            submitted_at: o.time("submitted_at")?,
            comment: o.string("comment")?,
        }),
        "quality_review" => R::QualityReview(pb::QualityReview {
            review_id: o.string("review_id")?,
            revision: o.unsigned("revision")?,
            interaction_id: o.string("interaction_id")?,
            reviewer_id: o.string("reviewer_id")?,
            score: o.small_unsigned("score")?,
            reviewed_at: o.time("reviewed_at")?,
        }),
        "customer_event" => R::CustomerEvent(pb::CustomerEvent {
            event_id: o.string("event_id")?,
            revision: o.unsigned("revision")?,
            customer_id: o.string("customer_id")?,
            kind: o.enumeration("kind", |n| {
                pb::CustomerEventKind::from_str_name(n).map(|k| k as i32)
            })?,
            occurred_at: o.time("occurred_at")?,
        }),
        other => {
            return Err(format!(
                "{other:?} is not interaction, survey_response, quality_review, customer_event \
                 or targets"
            ))
        }
    })
}

fn parse_targets(o: &Object<'_>) -> Result<pb::SetTargetsRequest, String> {
    let list = match o.get("targets") {
        None => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let target = Object::new(&format!("{}[{index}]", o.name("targets")), value)?;
                let parsed = pb::Target {
                    metric: target.enumeration("metric", |n| {
                        pb::Metric::from_str_name(n).map(|m| m as i32)
                    })?,
                    value: target.float("value")?,
                };
                target.reject_unknown()?;
                Ok(parsed)
            })
            .collect::<Result<_, String>>()?,
        Some(_) => return Err(format!("{}: must be a list", o.name("targets"))),
    };
    Ok(pb::SetTargetsRequest {
        team_id: o.string("team_id")?,
        targets: list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_keep_their_fraction_and_sign() {
        let cases = [
            (
                Duration {
                    seconds: 900,
                    nanos: 0,
                },
                "900s",
            ),
            (
                Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                },
                "1.5s",
            ),
            (
                Duration {
                    seconds: 0,
                    nanos: 1,
                },
                "0.000000001s",
            ),
            (
                Duration {
                    seconds: -2,
                    nanos: -250_000_000,
                },
                "-2.25s",
            ),
        ];
        for (duration, text) in cases {
            assert_eq!(duration_text(&duration), text);
            let line = format!(r#"{{"interaction": {{"handle_time": "{text}"}}}}"#);
            let Some(pb::record::Record::Interaction(parsed)) =
                record_from_line(&line).unwrap().record
            else {
                panic!("not an interaction");
            };
            assert_eq!(parsed.handle_time, Some(duration), "{text}");
        }
    }

    #[test]
    fn a_misspelt_field_is_named() {
        let error =
            from_line(r#"{"interaction": {"interaction_id": "i1", "team": "x"}}"#).unwrap_err();
        assert_eq!(error, "interaction.team: unknown field");
        let error = from_line(r#"{"survey_response": {"score": "high"}}"#).unwrap_err();
        assert!(error.starts_with("survey_response.score"), "{error}");
        assert!(from_line(r#"{"interaction": {}, "targets": {}}"#).is_err());
        assert!(from_line("[1]").is_err());
    }

    #[test]
    fn a_full_interaction_survives_a_round_trip() {
        let record = pb::Record {
            record: Some(pb::record::Record::Interaction(pb::Interaction {
                interaction_id: "i1".into(),
                revision: 3,
                ticket_id: "T1".into(),
                team_id: "billing".into(),
                agent_id: "ana".into(),
                customer_id: "c1".into(),
                channel: pb::Channel::Social as i32,
                priority: pb::Priority::Urgent as i32,
                opened_at: Some(Timestamp {
                    seconds: 1_772_442_000,
                    nanos: 123_000_000,
                }),
                first_response_at: Some(Timestamp {
                    seconds: 1_772_442_600,
                    nanos: 0,
                }),
                closed_at: None,
                handle_time: Some(Duration {
                    seconds: 61,
                    nanos: 5,
                }),
                resolved: false,
                tags: vec!["refund".into(), "vip".into()],
                social: Some(pb::SocialFacts {
                    kind: pb::SocialKind::Complaint as i32,
                    sentiment: -0.75,
                }),
            })),
        };
        let line = record_to_line(&record);
        assert!(
            line.contains(r#""opened_at":"2026-03-02T09:00:00.123Z""#),
            "{line}"
        );
        assert_eq!(record_from_line(&line).unwrap(), record);
    }

    fn timestamp() -> impl proptest::strategy::Strategy<Value = Timestamp> {
        use proptest::prelude::*;
        (0i64..4_102_444_800, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
    }

    proptest::proptest! {
        /// Whatever the field values, a line reads back as the record written:
        /// any float, any text, any instant, any duration.
        #[test]
        fn every_interaction_survives_a_round_trip(
            ids in proptest::collection::vec(".{0,12}", 5),
            revision in proptest::num::u64::ANY,
            channel in 0i32..9,
            opened_at in timestamp(),
            closed_at in proptest::option::of(timestamp()),
            seconds in -1_000_000i64..1_000_000,
            nanos in 0i32..1_000_000_000,
            tags in proptest::collection::vec(".{0,8}", 0..3),
            sentiment in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
        ) {
            let nanos = if seconds < 0 { -nanos } else { nanos };
            let record = pb::Record {
                record: Some(pb::record::Record::Interaction(pb::Interaction {
                    interaction_id: ids[0].clone(),
                    revision,
                    ticket_id: ids[1].clone(),
                    team_id: ids[2].clone(),
                    agent_id: ids[3].clone(),
                    customer_id: ids[4].clone(),
                    channel,
                    priority: 0,
                    opened_at: Some(opened_at),
                    first_response_at: None,
                    closed_at,
                    handle_time: Some(Duration { seconds, nanos }),
                    resolved: closed_at.is_some(),
                    tags,
                    social: Some(pb::SocialFacts { kind: 2, sentiment }),
                })),
            };
            let line = record_to_line(&record);
            proptest::prop_assert_eq!(record_from_line(&line), Ok(record), "{}", line);
        }
    }
}
