//! Key layout. Every key starts with one byte naming its family; ids never hold
//! a 0 byte, so a 0 ends a variable-length part; integers are big-endian with the
//! sign bit flipped so that byte order is numeric order.
//!
//! | family | key | value |
//! |---|---|---|
//! | `R` raw record | `R kind id` | the record |
//! | `I` raw index | `I t ticket 0 interaction`, `I f interaction 0 kind id`, `I e customer 0 event` | empty |
//! | `P` pending feedback | `P interaction 0 kind id` | empty |
//! | `G` group contribution | `G t ticket`, `G c customer` | the contribution, kept only while a background check recomputes; elsewhere a change to the key names the group to the journal |
//! | `A` aggregate | `A level scope start` (day `d`, month `m`; quarter `q` names a quarter in changes, stored in its hour parts) | the aggregate |
//! | | `A D scope start`, `A M scope start` | changes to that day's or month's aggregate not yet added to it (see `buckets`) |
//! | | `A t scope` (the registry of known scopes) | how many facts count in the scope |
//! | | `A p scope hour` | the aggregates of the hour's quarters (see `buckets`) |
//! | `X` derived index | `X o ticket` (the open ticket and the scopes counting it), `X c customer 0 opened_at interaction 0 ticket`, `X k customer 0 ticket`, `X l scope newest-first-day` (the day's listed tickets), `X r ticket` (the ticket's row) | see store |
//! | `T` targets | `T team` (empty = organisation) | the targets |
//! | `C` team terms | `C team 0 effective_from` | the team's business calendar and SLA policy from then on (either may be none) |
//! | `M` meta | `M s` | counters |
//! | `V` version | `V`, `V i` | the store's format version, and its id, which its snapshots carry (neither raw nor derived) |
//! | `J` journal | `J sequence` (u64, big-endian) | the `G` keys of the groups one durable commit changed and the earlier values of the `R`, `I`, `P`, `C` keys it changed, or "every group" (see `state`); deleted once a snapshot covers it |

use crate::domain::aggregate::Scope;
use crate::domain::records::{Channel, Id};
use crate::domain::time::Level;

pub const RAW: u8 = b'R';
pub const RAW_INDEX: u8 = b'I';
pub const PENDING: u8 = b'P';
pub const GROUP: u8 = b'G';
pub const AGGREGATE: u8 = b'A';
pub const DERIVED_INDEX: u8 = b'X';
pub const TARGETS: u8 = b'T';
pub const TERMS: u8 = b'C';
pub const META: u8 = b'M';
pub const VERSION: u8 = b'V';
pub const JOURNAL: u8 = b'J';
/// The level byte of hour parts: `A p scope hour` (see `buckets`).
pub const HOUR_PARTS: u8 = b'p';

/// Record kinds, as they appear in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Interaction,
    Survey,
    Review,
    Event,
}

impl RecordKind {
    pub fn byte(self) -> u8 {
        match self {
            RecordKind::Interaction => b'i',
            RecordKind::Survey => b's',
            RecordKind::Review => b'r',
            RecordKind::Event => b'e',
        }
    }
}

pub fn time_bytes(value: i64) -> [u8; 8] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn time_from_bytes(bytes: &[u8]) -> Option<i64> {
    let array: [u8; 8] = bytes.try_into().ok()?;
    Some((u64::from_be_bytes(array) ^ (1 << 63)) as i64)
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub fn raw(kind: RecordKind, id: &Id) -> Vec<u8> {
    key(&[&[RAW, kind.byte()], id.as_str().as_bytes()])
}

pub fn raw_prefix(kind: RecordKind) -> Vec<u8> {
    vec![RAW, kind.byte()]
}

pub fn ticket_members_prefix(ticket: &Id) -> Vec<u8> {
    key(&[&[RAW_INDEX, b't'], ticket.as_str().as_bytes(), &[0]])
}

pub fn ticket_member(ticket: &Id, interaction: &Id) -> Vec<u8> {
    key(&[
        &ticket_members_prefix(ticket),
        interaction.as_str().as_bytes(),
    ])
}

pub fn feedback_prefix(interaction: &Id) -> Vec<u8> {
    key(&[&[RAW_INDEX, b'f'], interaction.as_str().as_bytes(), &[0]])
}

pub fn feedback(interaction: &Id, kind: RecordKind, id: &Id) -> Vec<u8> {
    key(&[
        &feedback_prefix(interaction),
        &[kind.byte()],
        id.as_str().as_bytes(),
    ])
}

pub fn customer_events_prefix(customer: &Id) -> Vec<u8> {
    key(&[&[RAW_INDEX, b'e'], customer.as_str().as_bytes(), &[0]])
}

pub fn customer_event(customer: &Id, event: &Id) -> Vec<u8> {
    key(&[&customer_events_prefix(customer), event.as_str().as_bytes()])
}

pub fn pending_prefix(interaction: &Id) -> Vec<u8> {
    key(&[&[PENDING], interaction.as_str().as_bytes(), &[0]])
}

pub fn pending(interaction: &Id, kind: RecordKind, id: &Id) -> Vec<u8> {
    key(&[
        &pending_prefix(interaction),
        &[kind.byte()],
        id.as_str().as_bytes(),
    ])
}

/// The journal entry of the durable commit numbered `sequence` (see
/// `state`).
pub fn journal(sequence: u64) -> Vec<u8> {
    key(&[&[JOURNAL], &sequence.to_be_bytes()])
}

/// The sequence number of a journal key, if it is one.
pub fn journal_sequence(key: &[u8]) -> Option<u64> {
    match key {
        [JOURNAL, sequence @ ..] => Some(u64::from_be_bytes(sequence.try_into().ok()?)),
        _ => None,
    }
}

/// The unit whose contribution is stored and recomputed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Ticket(Id),
    Customer(Id),
}

/// A `G` key that names no group: a commit that changes it (a rebuild)
/// is journaled as changing every group.
pub const EVERY_GROUP: [u8; 2] = [GROUP, b'*'];

pub fn group(group: &Group) -> Vec<u8> {
    match group {
        Group::Ticket(id) => key(&[&[GROUP, b't'], id.as_str().as_bytes()]),
        Group::Customer(id) => key(&[&[GROUP, b'c'], id.as_str().as_bytes()]),
    }
}

pub fn group_from_key(bytes: &[u8]) -> Option<Group> {
    let id = Id::parse(std::str::from_utf8(bytes.get(2..)?).ok()?).ok()?;
    match bytes.get(..2)? {
        [GROUP, b't'] => Some(Group::Ticket(id)),
        [GROUP, b'c'] => Some(Group::Customer(id)),
        _ => None,
    }
}

const SCOPE_ORGANIZATION: u8 = 0;
const SCOPE_TEAM: u8 = 1;
const SCOPE_AGENT: u8 = 2;
const SCOPE_CHANNEL: u8 = 3;
const SCOPE_TEAM_CHANNEL: u8 = 4;
const SCOPE_TAG: u8 = 5;
const SCOPE_TEAM_TAG: u8 = 6;

/// A tag is free text (it may hold a 0 byte): length-prefixed, two bytes.
fn tag_bytes(tag: &str) -> Vec<u8> {
    let bytes = tag.as_bytes();
    let length = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    key(&[&length.to_be_bytes(), &bytes[..usize::from(length)]])
}

fn tag_from_bytes(bytes: &[u8]) -> Option<(String, &[u8])> {
    let length = usize::from(u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?));
    let tag = std::str::from_utf8(bytes.get(2..2 + length)?).ok()?;
    Some((tag.to_owned(), &bytes[2 + length..]))
}

/// A prefix-free encoding of a scope.
pub fn scope_bytes(scope: &Scope) -> Vec<u8> {
    match scope {
        Scope::Organization => vec![SCOPE_ORGANIZATION],
        Scope::Team(team) => key(&[&[SCOPE_TEAM], team.as_str().as_bytes(), &[0]]),
        Scope::Agent(agent) => key(&[&[SCOPE_AGENT], agent.as_str().as_bytes(), &[0]]),
        Scope::Channel(channel) => vec![SCOPE_CHANNEL, channel.code()],
        Scope::TeamChannel(team, channel) => key(&[
            &[SCOPE_TEAM_CHANNEL],
            team.as_str().as_bytes(),
            &[0, channel.code()],
        ]),
        Scope::Tag(tag) => key(&[&[SCOPE_TAG], &tag_bytes(tag)]),
        Scope::TeamTag(team, tag) => key(&[&team_tags_scope_prefix(team), &tag_bytes(tag)]),
    }
}

/// What every team × tag scope of `team` starts with.
fn team_tags_scope_prefix(team: &Id) -> Vec<u8> {
    key(&[&[SCOPE_TEAM_TAG], team.as_str().as_bytes(), &[0]])
}

/// A day's or month's changes not yet added to its bucket: `A D scope start`
/// and `A M scope start` beside `A d …` and `A m …` (see `buckets`).
pub fn pending_changes_of(bucket: &[u8]) -> Option<Vec<u8>> {
    match bucket {
        [AGGREGATE, level @ (b'd' | b'm'), rest @ ..] if rest.len() > 8 => {
            Some([&[AGGREGATE, level.to_ascii_uppercase()][..], rest].concat())
        }
        _ => None,
    }
}

/// The bucket whose pending changes are stored at `key`, if they are.
pub fn bucket_of_pending(key: &[u8]) -> Option<Vec<u8>> {
    match key {
        [AGGREGATE, level @ (b'D' | b'M'), rest @ ..] if rest.len() > 8 => {
            Some([&[AGGREGATE, level.to_ascii_lowercase()][..], rest].concat())
        }
        _ => None,
    }
}

/// The level byte of the registry of known scopes: `A t scope`, holding how
/// many facts count in the scope (a scope with none has no entry).
pub const SCOPE_REGISTRY: u8 = b't';

/// A scope's entry in the registry of known scopes.
pub fn registered_scope(scope: &Scope) -> Vec<u8> {
    key(&[&[AGGREGATE, SCOPE_REGISTRY], &scope_bytes(scope)])
}

/// Prefix of the registry entries of every team × tag scope of a team.
pub fn team_tags_registry_prefix(team: &Id) -> Vec<u8> {
    key(&[&[AGGREGATE, SCOPE_REGISTRY], &team_tags_scope_prefix(team)])
}

/// Decodes a scope from the start of `bytes`, returning it and the bytes after it.
pub fn scope_from_bytes(bytes: &[u8]) -> Option<(Scope, &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let id_and_rest = |rest: &[u8]| -> Option<(Id, usize)> {
        let end = rest.iter().position(|&b| b == 0)?;
        let id = Id::parse(std::str::from_utf8(&rest[..end]).ok()?).ok()?;
        Some((id, end + 1))
    };
    match tag {
        SCOPE_ORGANIZATION => Some((Scope::Organization, rest)),
        SCOPE_TEAM => id_and_rest(rest).map(|(id, used)| (Scope::Team(id), &rest[used..])),
        SCOPE_AGENT => id_and_rest(rest).map(|(id, used)| (Scope::Agent(id), &rest[used..])),
        SCOPE_CHANNEL => Some((
            Scope::Channel(Channel::from_code(*rest.first()?)?),
            &rest[1..],
        )),
        SCOPE_TEAM_CHANNEL => {
            let (id, used) = id_and_rest(rest)?;
            let channel = Channel::from_code(*rest.get(used)?)?;
            Some((Scope::TeamChannel(id, channel), &rest[used + 1..]))
        }
        SCOPE_TAG => tag_from_bytes(rest).map(|(tag, rest)| (Scope::Tag(tag), rest)),
        SCOPE_TEAM_TAG => {
            let (id, used) = id_and_rest(rest)?;
            let (tag, rest) = tag_from_bytes(&rest[used..])?;
            Some((Scope::TeamTag(id, tag), rest))
        }
        _ => None,
    }
}

/// The leading byte of every scope of a kind, for listing.
pub fn scope_kind_byte(kind: crate::domain::aggregate::ScopeKind) -> u8 {
    use crate::domain::aggregate::ScopeKind;
    match kind {
        ScopeKind::Organization => SCOPE_ORGANIZATION,
        ScopeKind::Team => SCOPE_TEAM,
        ScopeKind::Agent => SCOPE_AGENT,
        ScopeKind::Channel => SCOPE_CHANNEL,
        ScopeKind::TeamChannel => SCOPE_TEAM_CHANNEL,
        ScopeKind::Tag => SCOPE_TAG,
        ScopeKind::TeamTag => SCOPE_TEAM_TAG,
    }
}

pub fn level_byte(level: Level) -> u8 {
    match level {
        Level::Quarter => b'q',
        Level::Day => b'd',
        Level::Month => b'm',
    }
}

pub fn aggregate(level: Level, scope: &Scope, start_seconds: i64) -> Vec<u8> {
    aggregate_of(level, &scope_bytes(scope), start_seconds)
}

/// [`aggregate`] for a scope given by its encoding ([`scope_bytes`]).
pub fn aggregate_of(level: Level, scope_bytes: &[u8], start_seconds: i64) -> Vec<u8> {
    key(&[
        &[AGGREGATE, level_byte(level)],
        scope_bytes,
        &time_bytes(start_seconds),
    ])
}

/// Prefix of the registry entries of every scope of a kind.
pub fn registry_prefix(kind: crate::domain::aggregate::ScopeKind) -> Vec<u8> {
    vec![AGGREGATE, SCOPE_REGISTRY, scope_kind_byte(kind)]
}

/// Every key of the open-ticket index starts with this.
pub const OPEN_TICKETS: [u8; 2] = [DERIVED_INDEX, b'o'];

/// An open ticket's entry in the open-ticket index (one per ticket, naming
/// the scopes whose backlogs count it).
pub fn open_ticket(ticket: &Id) -> Vec<u8> {
    key(&[&OPEN_TICKETS, ticket.as_str().as_bytes()])
}

/// The length of the scope encoded at the start of `bytes`, if one is.
pub fn scope_len(bytes: &[u8]) -> Option<usize> {
    let (_, rest) = scope_from_bytes(bytes)?;
    Some(bytes.len() - rest.len())
}

pub fn ticket_rows_prefix(scope: &Scope) -> Vec<u8> {
    key(&[&[DERIVED_INDEX, b'l'], &scope_bytes(scope)])
}

/// The ticket id at the end of a listing position.
pub fn ticket_of_position(position: &[u8]) -> Option<Id> {
    Id::parse(std::str::from_utf8(position.get(8..)?).ok()?).ok()
}

/// Orders ticket rows newest first: a later creation sorts earlier.
pub fn newest_first(created_at_nanos: i64) -> [u8; 8] {
    time_bytes(i64::MAX - created_at_nanos)
}

/// A ticket's drill-down row, stored once whatever the scopes listing it.
pub fn ticket_row(ticket: &Id) -> Vec<u8> {
    key(&[&[DERIVED_INDEX, b'r'], ticket.as_str().as_bytes()])
}

/// One scope's drill-down list of the tickets created on the UTC day that
/// begins at `day_start_nanos`: their positions (see `listings`; a ticket's
/// row is under `ticket_row`, so a changed answer rewrites one value, not one
/// per scope). Newer days sort first, as positions do.
pub fn ticket_listing_day(scope: &Scope, day_start_nanos: i64) -> Vec<u8> {
    key(&[&ticket_rows_prefix(scope), &newest_first(day_start_nanos)])
}

pub fn ticket_row_position(created_at_nanos: i64, ticket: &Id) -> Vec<u8> {
    key(&[&newest_first(created_at_nanos), ticket.as_str().as_bytes()])
}

pub fn customer_contacts_prefix(customer: &Id) -> Vec<u8> {
    key(&[&[DERIVED_INDEX, b'c'], customer.as_str().as_bytes(), &[0]])
}

/// The ticket is part of the key so that an interaction moving between tickets
/// is a delete by one group and an insert by another, never a shared key.
pub fn customer_contact(
    customer: &Id,
    opened_at_nanos: i64,
    interaction: &Id,
    ticket: &Id,
) -> Vec<u8> {
    key(&[
        &customer_contacts_prefix(customer),
        &time_bytes(opened_at_nanos),
        interaction.as_str().as_bytes(),
        &[0],
        ticket.as_str().as_bytes(),
    ])
}

pub fn customer_tickets_prefix(customer: &Id) -> Vec<u8> {
    key(&[&[DERIVED_INDEX, b'k'], customer.as_str().as_bytes(), &[0]])
}

pub fn customer_ticket(customer: &Id, ticket: &Id) -> Vec<u8> {
    key(&[
        &customer_tickets_prefix(customer),
        ticket.as_str().as_bytes(),
    ])
}

pub fn terms_prefix(team: &Id) -> Vec<u8> {
    key(&[&[TERMS], team.as_str().as_bytes(), &[0]])
}

/// A version of a team's terms (business calendar and SLA policy), in effect
/// for tickets created from `effective_from_seconds` on.
pub fn terms(team: &Id, effective_from_seconds: i64) -> Vec<u8> {
    key(&[&terms_prefix(team), &time_bytes(effective_from_seconds)])
}

/// The team and moment of a terms key.
pub fn terms_from_key(key: &[u8]) -> Option<(Id, i64)> {
    let rest = key.strip_prefix(&[TERMS])?;
    let team_end = rest.iter().position(|&b| b == 0)?;
    let team = Id::parse(std::str::from_utf8(&rest[..team_end]).ok()?).ok()?;
    Some((team, time_from_bytes(&rest[team_end + 1..])?))
}

pub fn targets(team: Option<&Id>) -> Vec<u8> {
    key(&[&[TARGETS], team.map(Id::as_str).unwrap_or("").as_bytes()])
}

pub fn stats() -> Vec<u8> {
    vec![META, b's']
}

/// The store's id: 16 random bytes written when its derived state first
/// opens, and carried by its snapshots, so that a snapshot of another store
/// is never loaded.
pub fn store_id() -> Vec<u8> {
    vec![VERSION, b'i']
}

/// The store's format version.
pub fn format() -> Vec<u8> {
    vec![VERSION]
}

/// The first key after every key that starts with `prefix`, or `None` if
/// no key is (the prefix is all 0xff bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A readable form of a key, for logs and mismatch reports.
pub fn describe_key(key: &[u8]) -> String {
    key.iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_are_prefix_free() {
        let team = Id::parse("billing").unwrap();
        let scopes = [
            Scope::Organization,
            Scope::Team(team.clone()),
            Scope::Agent(Id::parse("ana").unwrap()),
            Scope::Channel(Channel::Social),
            Scope::TeamChannel(team.clone(), Channel::Web),
            Scope::Tag("refunds".into()),
            Scope::Tag("with\0zero and ünïcode".into()),
            Scope::Tag(String::new()),
            Scope::TeamTag(team, "login".into()),
        ];
        for scope in &scopes {
            let mut bytes = scope_bytes(scope);
            bytes.extend_from_slice(b"rest");
            let (decoded, rest) = scope_from_bytes(&bytes).unwrap();
            assert_eq!(&decoded, scope);
            assert_eq!(rest, b"rest");
        }
    }

    #[test]
    fn terms_keys_round_trip() {
        let team = Id::parse("billing").unwrap();
        for moment in [i64::MIN, -1, 0, 1_795_527_593] {
            assert_eq!(
                terms_from_key(&terms(&team, moment)),
                Some((team.clone(), moment))
            );
        }
        assert_eq!(terms_from_key(&targets(Some(&team))), None);
    }

    #[test]
    fn a_prefix_end_follows_every_key_with_the_prefix_and_nothing_before() {
        assert_eq!(prefix_end(b"Ab"), Some(b"Ac".to_vec()));
        assert_eq!(prefix_end(&[b'A', 0xff]), Some(b"B".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        let end = prefix_end(b"Xo").unwrap();
        assert!([b'X', b'o', 0xff, 0xff].as_slice() < end.as_slice());
        assert!(b"Xp".as_slice() >= end.as_slice());
    }

    #[test]
    fn time_bytes_sort_numerically() {
        let values = [-5i64, -1, 0, 1, 1_700_000_000, i64::MAX];
        for pair in values.windows(2) {
            assert!(time_bytes(pair[0]) < time_bytes(pair[1]));
            assert_eq!(time_from_bytes(&time_bytes(pair[0])), Some(pair[0]));
        }
    }
}
