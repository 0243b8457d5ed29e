//! Live scorecards. Watchers of the same selection, moving window and minimum
//! sample share one *feed*: a task that recomputes the scorecard when the store
//! changes, when the window moves on, and once a minute (backlog ages), and
//! publishes it only when it differs. Publishing is a `watch` channel, so a
//! feed never waits for a watcher and a watcher that reads slowly only skips
//! to the newest scorecard; writers never wait for either (a window read
//! holds a commit back only when commits kept landing in its reads, see
//! [`KvStore::read_consistently`]).
//!
//! [`KvStore::read_consistently`]: crate::store::KvStore::read_consistently

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::domain::aggregate::Selection;
use crate::domain::time::{Instant, MovingWindow, NANOS_PER_SECOND};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::queries::{self, Scorecard, ScorecardQuery};
use crate::store::{Store, WeakStore};

/// After a recomputation a feed waits this long before the next, folding a
/// burst of writes into one scorecard.
const COALESCE: Duration = Duration::from_millis(100);
/// Backlog ages move with the clock: recompute at least this often.
const REFRESH: Duration = Duration::from_secs(60);
/// At most this many watch streams at once; more are RESOURCE_EXHAUSTED.
pub const MAX_WATCHERS: usize = 10_000;
/// At most this many distinct live scorecards at once.
pub const MAX_FEEDS: usize = 1_000;
/// Feeds recompute at most this many scorecards at once, so that live
/// scorecards never crowd out the blocking pool that serves ordinary reads.
const CONCURRENT_RECOMPUTES: usize = 2;

/// What watchers share a feed by. (Each watcher applies its own `min_sample`
/// to the target statuses.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedKey {
    pub selection: Selection,
    pub window: MovingWindow,
}

/// The latest state of a feed.
#[derive(Debug, Clone)]
pub enum FeedState {
    /// Nothing computed yet.
    Starting,
    Current(Arc<Scorecard>),
    /// The feed could not read the store and has stopped.
    Failed(Error),
}

/// One shared live scorecard; its task stops when the last watcher lets go.
#[derive(Debug)]
pub struct Feed {
    state: watch::Receiver<FeedState>,
    task: JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
        self.metrics.live_feeds(-1);
    }
}

/// A watcher's hold on a feed (counted while it lives).
#[derive(Debug)]
pub struct Watch {
    feed: Arc<Feed>,
    watchers: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Watch {
    /// The feed's state; `changed()` on it waits for the next publication.
    pub fn state(&self) -> watch::Receiver<FeedState> {
        self.feed.state.clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
        self.metrics.live_watchers(-1);
    }
}

/// Every feed, by key.
#[derive(Debug)]
pub struct LiveScorecards {
    store: WeakStore,
    changes: watch::Receiver<u64>,
    metrics: Arc<Metrics>,
    feeds: Mutex<HashMap<FeedKey, Weak<Feed>>>,
    watchers: Arc<AtomicUsize>,
    stopping: watch::Sender<bool>,
    recomputes: Arc<Semaphore>,
}

impl LiveScorecards {
    pub fn new(store: &Store) -> LiveScorecards {
        LiveScorecards {
            store: store.downgrade(),
            changes: store.changes(),
            metrics: store.metrics(),
            feeds: Mutex::new(HashMap::new()),
            watchers: Arc::new(AtomicUsize::new(0)),
            stopping: watch::channel(false).0,
            recomputes: Arc::new(Semaphore::new(CONCURRENT_RECOMPUTES)),
        }
    }

    /// Joins the feed for `key`, starting it if nobody watches it yet.
    pub fn watch(&self, key: FeedKey) -> Result<Watch> {
        let mut feeds = self
            .feeds
            .lock()
            .map_err(|_| Error::Internal("live feed table poisoned".into()))?;
        if self.watchers.fetch_add(1, Ordering::Relaxed) >= MAX_WATCHERS {
            self.watchers.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::ResourceExhausted(format!(
                "the server already serves {MAX_WATCHERS} live scorecards; \
                 close one or poll GetScorecard"
            )));
        }
        feeds.retain(|_, feed| feed.strong_count() > 0);
        let feed = match feeds.get(&key).and_then(Weak::upgrade) {
            Some(feed) => feed,
            None if feeds.len() >= MAX_FEEDS => {
                self.watchers.fetch_sub(1, Ordering::Relaxed);
                return Err(Error::ResourceExhausted(format!(
                    "the server already keeps {MAX_FEEDS} distinct live scorecards current; \
                     watch one of those or poll GetScorecard"
                )));
            }
            None => {
                let feed = Arc::new(self.start(key.clone()));
                feeds.insert(key, Arc::downgrade(&feed));
                feed
            }
        };
        self.metrics.live_watchers(1);
        Ok(Watch {
            feed,
            watchers: Arc::clone(&self.watchers),
            metrics: Arc::clone(&self.metrics),
        })
    }

    /// Tells every watcher that the server is stopping.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Becomes true when the server starts to stop.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    fn start(&self, key: FeedKey) -> Feed {
        let (publish, state) = watch::channel(FeedState::Starting);
        let task = tokio::spawn(run_feed(
            self.store.clone(),
            key,
            self.changes.clone(),
            Arc::clone(&self.recomputes),
            publish,
        ));
        self.metrics.live_feeds(1);
        Feed {
            state,
            task,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// Equal but for what moves with the clock alone: the moment the backlog was
/// measured at and the oldest open ticket's age. (Age bands and SLA breach
/// counts are compared; a ticket crossing one is caught by the periodic refresh.)
fn same_scorecard(a: &Scorecard, b: &Scorecard) -> bool {
    let mut a = a.clone();
    a.backlog.as_of = b.backlog.as_of;
    a.backlog.oldest_age_seconds = b.backlog.oldest_age_seconds;
    &a == b
}

async fn run_feed(
    store: WeakStore,
    key: FeedKey,
    mut changes: watch::Receiver<u64>,
    recomputes: Arc<Semaphore>,
    publish: watch::Sender<FeedState>,
) {
    let stopped = |publish: &watch::Sender<FeedState>| {
        publish.send_replace(FeedState::Failed(Error::Unavailable(
            "the store is closing".into(),
        )));
    };
    loop {
        changes.borrow_and_update();
        let now = Instant::now();
        let computed = match key.window.at(now.seconds()) {
            Err(error) => Err(Error::invalid("window", error.to_string())),
            Ok((window, moves_at)) => {
                let query = ScorecardQuery {
                    scope: key.selection.clone(),
                    window,
                    compare_previous: false,
                    include_organization: false,
                    backlog_as_of: now,
                    min_sample: 0,
                };
                let Some(store) = store.upgrade() else {
                    return stopped(&publish);
                };
                let Ok(_permit) = recomputes.acquire().await else {
                    return stopped(&publish);
                };
                tokio::task::spawn_blocking(move || queries::scorecard(store.kv(), &query))
                    .await
                    .unwrap_or_else(|e| Err(Error::Internal(format!("read task failed: {e}"))))
                    .map(|card| (card, moves_at))
            }
        };
        let moves_at = match computed {
            Ok((card, moves_at)) => {
                // Keep the freshest card (a new watcher gets the backlog as of
                // now), but tell watchers only when more than the clock moved.
                publish.send_if_modified(|state| {
                    let changed = !matches!(
                        state,
                        FeedState::Current(current) if same_scorecard(current, &card)
                    );
                    *state = FeedState::Current(Arc::new(card));
                    changed
                });
                moves_at
            }
            Err(error) => {
                tracing::error!(%error, ?key, "live scorecard stopped");
                publish.send_replace(FeedState::Failed(error));
                return;
            }
        };
        let until_move = moves_at * NANOS_PER_SECOND - Instant::now().0;
        let wait = REFRESH.min(Duration::from_nanos(u64::try_from(until_move).unwrap_or(0)));
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return stopped(&publish) },
            () = tokio::time::sleep(wait) => {}
            () = publish.closed() => return,
        }
        tokio::time::sleep(COALESCE).await;
    }
}
