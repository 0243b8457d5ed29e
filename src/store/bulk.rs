//! Bulk loading into a store that holds no records yet (`import` of a backup
//! into an empty directory, `demo`): records go into the record log in large
//! batches under the rules of every write (idempotency by id and revision,
//! raw indexes, pending feedback, counters), but no batch recomputes derived
//! state. Once the records are in, the derived state is computed once, by the
//! replay of every group in time order that opening a store without a
//! snapshot runs ([`Store::open`]). A batch commit then costs only its
//! records, and each ticket and customer is computed once, not once per batch
//! that touches it.
//!
//! Crash safety: the load starts by removing any snapshot (an empty store's),
//! so until it finishes there is no snapshot to trust, and any open after a
//! crash recomputes the derived state from whatever records are there.

use std::sync::Arc;

use crate::domain::records::{Id, Record};
use crate::domain::scorecard::Targets;
use crate::domain::sla::TeamTerms;
use crate::error::{Error, Result};

use super::kv::{KvStore, SledOptions, SledStore};
use super::state::{has_raw_records, is_derived};
use super::txn::{Reader, Txn};
use super::writes::{Counters, Outcome};
use super::{apply_command, check_format, keys, refuse_an_emptied_store, snapshots};
use super::{Command, Reply, Store};

/// A bulk load in progress: the record log of a store without records,
/// open without its derived state.
pub struct BulkLoad {
    engine: Arc<SledStore>,
    options: SledOptions,
    counters: Counters,
}

impl std::fmt::Debug for BulkLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLoad")
            .field("path", &self.options.path)
            .field("counters", &self.counters)
            .finish()
    }
}

impl BulkLoad {
    /// Starts a bulk load into the store at `options.path` (created if
    /// missing), or gives `None` if it holds records already: a load into
    /// it must retract what those contribute, which the writer's own path
    /// ([`Store::record`]) does.
    pub fn begin(options: &SledOptions) -> Result<Option<BulkLoad>> {
        let engine = Arc::new(SledStore::open(options)?);
        refuse_an_emptied_store(engine.as_ref(), &options.path)?;
        check_format(engine.as_ref(), &options.path)?;
        if has_raw_records(engine.as_ref())? {
            return Ok(None);
        }
        // Durably gone before the first record lands (see the module doc).
        snapshots::remove(&snapshots::path_in(&options.path))?;
        let counters = Reader::get_decoded(engine.as_ref() as &dyn KvStore, &keys::stats())?
            .unwrap_or_default();
        Ok(Some(BulkLoad {
            engine,
            options: options.clone(),
            counters,
        }))
    }

    /// Writes `records`, each with its outcome as [`Store::record`] gives it.
    pub fn record(&mut self, records: Vec<Record>) -> Result<Vec<Result<Outcome>>> {
        match self.commit(Command::Records(records))? {
            Reply::Records(outcomes) => Ok(outcomes),
            _ => Err(Error::Internal(
                "records answered as another command".into(),
            )),
        }
    }

    /// Sets a team's targets (or the organisation's), as [`Store::set_targets`].
    pub fn set_targets(&mut self, team: Option<Id>, targets: Targets) -> Result<()> {
        self.commit(Command::SetTargets(team, targets)).map(|_| ())
    }

    /// Restores a version of a team's terms, as [`Store::restore_terms`].
    pub fn restore_terms(&mut self, team: Id, effective_from: i64, terms: TeamTerms) -> Result<()> {
        self.commit(Command::RestoreTerms(team, terms, effective_from))
            .map(|_| ())
    }

    /// Applies a command to the record log in one commit; the groups it
    /// touches are left to the replay that finishes the load.
    fn commit(&mut self, command: Command) -> Result<Reply> {
        let engine: &dyn KvStore = self.engine.as_ref();
        let mut txn = Txn::new(engine);
        let mut counters = self.counters.clone();
        let reply = apply_command(&mut txn, &mut counters, &command)?;
        txn.take_touched();
        if counters != self.counters {
            txn.put(keys::stats(), &counters)?;
        }
        let (changes, deltas) = txn.into_parts()?;
        if let Some((key, _)) = changes.iter().find(|(key, _)| is_derived(key)) {
            return Err(Error::Internal(format!(
                "a bulk load wrote the derived key {}",
                keys::describe_key(key)
            )));
        }
        if !deltas.is_empty() {
            return Err(Error::Internal("a bulk load changed aggregates".into()));
        }
        if !changes.is_empty() {
            engine.commit(changes)?;
        }
        self.counters = counters;
        Ok(reply)
    }

    /// Flushes the records and opens the store, which computes its derived
    /// state from them in one replay and saves it as a snapshot.
    pub fn finish(self) -> Result<Store> {
        self.engine.flush()?;
        let BulkLoad {
            engine, options, ..
        } = self;
        drop(engine);
        tracing::info!("bulk load written: computing the derived state from the records once");
        Store::open(&options)
    }
}
