//! The records the helpdesk sends, as validated domain values, and the newtypes
//! that parse their fields. Once you hold one of these, it is valid.

use serde::{Deserialize, Serialize};

use super::time::Instant;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is required")]
    Empty,
    #[error("must be at most {MAX_ID_LEN} characters")]
    TooLong,
    #[error("may only contain letters, digits and . _ : @ -")]
    BadCharacter,
}

/// Ids are 1–128 characters of `[A-Za-z0-9._:@-]`.
pub const MAX_ID_LEN: usize = 128;

/// An identifier of a record, ticket, team, agent, customer or reviewer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Id(String);

impl Id {
    pub fn parse(raw: &str) -> Result<Id, IdError> {
        if raw.is_empty() {
            return Err(IdError::Empty);
        }
        if raw.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
        if !raw.chars().all(allowed) {
            return Err(IdError::BadCharacter);
        }
        Ok(Id(raw.to_owned()))
    }

    /// An optional id: empty means none.
    pub fn parse_optional(raw: &str) -> Result<Option<Id>, IdError> {
        if raw.is_empty() {
            Ok(None)
        } else {
            Id::parse(raw).map(Some)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Channel {
    Email,
    Chat,
    Phone,
    Social,
    Messaging,
    Web,
    Other,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Channel::Email,
        Channel::Chat,
        Channel::Phone,
        Channel::Social,
        Channel::Messaging,
        Channel::Web,
        Channel::Other,
    ];

    /// A stable one-byte code, used in store keys.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Channel> {
        Channel::ALL.get(usize::from(code)).copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SocialKind {
    Mention,
    Complaint,
    QuestionTechnical,
    QuestionAccount,
    Praise,
}

/// Sentiment below this is negative.
pub const NEGATIVE_SENTIMENT_BELOW: f64 = -0.3;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SocialFacts {
    pub kind: SocialKind,
    /// In [-1, 1].
    pub sentiment: f64,
}

impl SocialFacts {
    pub fn is_negative(&self) -> bool {
        self.kind == SocialKind::Complaint || self.sentiment < NEGATIVE_SENTIMENT_BELOW
    }
}

/// One contact between a customer and support.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub interaction_id: Id,
    pub revision: u64,
    pub ticket_id: Id,
    pub team_id: Id,
    pub agent_id: Option<Id>,
    pub customer_id: Option<Id>,
    pub channel: Channel,
    pub priority: Priority,
    pub opened_at: Instant,
    pub first_response_at: Option<Instant>,
    pub closed_at: Option<Instant>,
    /// Nanoseconds, 0 to 7 days.
    pub handle_time_nanos: Option<i64>,
    /// Resolved interactions always have `closed_at`.
    pub resolved: bool,
    pub tags: Vec<String>,
    pub social: Option<SocialFacts>,
}

impl Interaction {
    /// The scopes this interaction's facts are attributed to.
    pub fn attribution(&self) -> Attribution {
        Attribution {
            team_id: self.team_id.clone(),
            agent_id: self.agent_id.clone(),
            channel: self.channel,
        }
    }

    /// When this interaction resolved its ticket, if it did.
    pub fn resolved_at(&self) -> Option<Instant> {
        if self.resolved {
            self.closed_at
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SurveyKind {
    Csat,
    Ces,
    Nps,
}

impl SurveyKind {
    pub fn name(self) -> &'static str {
        match self {
            SurveyKind::Csat => "CSAT",
            SurveyKind::Ces => "CES",
            SurveyKind::Nps => "NPS",
        }
    }

    /// The inclusive score range of this kind.
    pub fn score_range(self) -> (u32, u32) {
        match self {
            SurveyKind::Csat => (1, 5),
            SurveyKind::Ces => (1, 7),
            SurveyKind::Nps => (0, 10),
        }
    }
}

/// Comments longer than this are refused.
pub const MAX_COMMENT_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurveyResponse {
    pub response_id: Id,
    pub revision: u64,
    pub interaction_id: Id,
    pub kind: SurveyKind,
    /// Within `kind.score_range()`.
    pub score: u8,
    pub submitted_at: Instant,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityReview {
    pub review_id: Id,
    pub revision: u64,
    pub interaction_id: Id,
    pub reviewer_id: Id,
    /// 0–100.
    pub score: u8,
    pub reviewed_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CustomerEventKind {
    Churned,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerEvent {
    pub event_id: Id,
    pub revision: u64,
    pub customer_id: Id,
    pub kind: CustomerEventKind,
    pub occurred_at: Instant,
}

/// Any record, as in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Interaction(Interaction),
    SurveyResponse(SurveyResponse),
    QualityReview(QualityReview),
    CustomerEvent(CustomerEvent),
}

/// The team, agent and channel a fact is attributed to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attribution {
    pub team_id: Id,
    pub agent_id: Option<Id>,
    pub channel: Channel,
}
