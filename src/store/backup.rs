//! Backups: a consistent snapshot of what users wrote (raw records and targets),
//! spooled to an unnamed temporary file so it can be streamed out at leisure
//! while the store keeps changing.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use crate::domain::records::{Id, Record};
use crate::domain::scorecard::Targets;
use crate::domain::sla::TeamTerms;
use crate::error::{Error, Result};

use super::codec::decode;
use super::groups::decode_terms;
use super::keys::{self, RecordKind};
use super::kv::KvStore;

/// One item of a backup.
#[derive(Debug, Clone, PartialEq)]
pub enum BackupItem {
    /// A raw record at its latest revision.
    Record(Record),
    /// The targets of a team, or (`None`) the organisation default.
    Targets(Option<Id>, Targets),
    /// A version of a team's terms (business calendar and SLA policy), in
    /// effect from `effective_from` (UTC seconds; `i64::MIN`: always).
    Terms {
        team: Id,
        effective_from: i64,
        terms: TeamTerms,
    },
}

/// The families a backup holds: everything else is derived from them.
/// Team terms come first: an import needs them before the tickets they apply to.
const SOURCE_FAMILIES: [u8; 3] = [keys::TERMS, keys::RAW, keys::TARGETS];

/// A snapshot of the raw records and targets, as stored bytes in a spool file.
#[derive(Debug)]
pub struct Snapshot {
    spool: BufReader<File>,
    remaining: u64,
}

impl Snapshot {
    /// Copies every source key and value into an unnamed file in `spool_dir`.
    /// The caller keeps writers out for the duration to make it consistent.
    pub fn take(kv: &dyn KvStore, spool_dir: &Path) -> Result<Snapshot> {
        let file = tempfile::tempfile_in(spool_dir)?;
        let mut writer = BufWriter::new(file);
        let mut count = 0u64;
        for family in SOURCE_FAMILIES {
            for entry in kv.scan_prefix(&[family]) {
                let (key, value) = entry?;
                write_part(&mut writer, &key)?;
                write_part(&mut writer, &value)?;
                count += 1;
            }
        }
        let mut file = writer
            .into_inner()
            .map_err(|e| Error::from(e.into_error()))?;
        file.rewind()?;
        Ok(Snapshot {
            spool: BufReader::new(file),
            remaining: count,
        })
    }

    /// Items left to read.
    pub fn len(&self) -> u64 {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The next key and value from the spool file.
    fn next_entry(&mut self) -> Result<(Vec<u8>, Vec<u8>)> {
        let key = read_part(&mut self.spool)?;
        let value = read_part(&mut self.spool)?;
        Ok((key, value))
    }
}

impl Iterator for Snapshot {
    type Item = Result<BackupItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        match self.next_entry() {
            // A damaged value is reported and the next one read: a salvage
            // (`export --skip-damaged`) goes on past it.
            Ok((key, value)) => Some(item(&key, &value)),
            Err(error) => {
                // A damaged spool cannot be resynchronised; stop after reporting.
                self.remaining = 0;
                Some(Err(error))
            }
        }
    }
}

fn write_part(writer: &mut impl Write, bytes: &[u8]) -> Result<()> {
    let length = u32::try_from(bytes.len())
        .map_err(|_| Error::Internal("a stored value exceeds 4 GiB".into()))?;
    writer.write_all(&length.to_le_bytes())?;
    writer.write_all(bytes)?;
    Ok(())
}

fn read_part(reader: &mut impl Read) -> Result<Vec<u8>> {
    let mut length = [0u8; 4];
    reader.read_exact(&mut length)?;
    let mut bytes = vec![0u8; u32::from_le_bytes(length) as usize];
    reader.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Decodes one stored source value by its key.
fn item(key: &[u8], value: &[u8]) -> Result<BackupItem> {
    let record = |kind: u8| -> Result<Record> {
        Ok(match kind {
            k if k == RecordKind::Interaction.byte() => Record::Interaction(decode(key, value)?),
            k if k == RecordKind::Survey.byte() => Record::SurveyResponse(decode(key, value)?),
            k if k == RecordKind::Review.byte() => Record::QualityReview(decode(key, value)?),
            k if k == RecordKind::Event.byte() => Record::CustomerEvent(decode(key, value)?),
            _ => return Err(unknown_key(key)),
        })
    };
    match key {
        [keys::RAW, kind, ..] => record(*kind).map(BackupItem::Record),
        [keys::TARGETS, team @ ..] => {
            let team = std::str::from_utf8(team)
                .ok()
                .and_then(|team| Id::parse_optional(team).ok())
                .ok_or_else(|| unknown_key(key))?;
            Ok(BackupItem::Targets(team, decode(key, value)?))
        }
        [keys::TERMS, ..] => {
            let (team, effective_from) =
                keys::terms_from_key(key).ok_or_else(|| unknown_key(key))?;
            Ok(BackupItem::Terms {
                team,
                effective_from,
                terms: decode_terms(key, value)?,
            })
        }
        _ => Err(unknown_key(key)),
    }
}

fn unknown_key(key: &[u8]) -> Error {
    Error::DataLoss(format!(
        "key {} is not a record, targets or team terms key",
        keys::describe_key(key)
    ))
}
