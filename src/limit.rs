//! A bound on the requests the whole server handles at once. Beyond it a
//! request is answered at once with RESOURCE_EXHAUSTED instead of queueing, so
//! memory stays bounded and clients back off. Health checks are never refused,
//! so an overloaded pod is not also restarted by its probes.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use crate::gate::Admission;

/// gRPC paths that bypass the bound.
const EXEMPT_PREFIX: &str = "/grpc.health.v1.";

/// At most `limit` requests in flight; each admitted one holds a permit until
/// its response is ready.
#[derive(Debug)]
pub struct InFlightLimit {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl InFlightLimit {
    pub fn new(limit: usize) -> Self {
        InFlightLimit {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Requests holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl Admission for InFlightLimit {
    /// `None` for exempt requests.
    type Ticket = Option<OwnedSemaphorePermit>;

    fn admit<B>(&self, request: &http::Request<B>) -> Result<Self::Ticket, Status> {
        let path = request.uri().path();
        if path.starts_with(EXEMPT_PREFIX) {
            return Ok(None);
        }
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => {
                tracing::warn!(
                    path,
                    limit = self.limit,
                    "refused: too many requests in flight"
                );
                Err(Status::resource_exhausted(format!(
                    "the server is handling its maximum of {} requests; retry with backoff",
                    self.limit
                )))
            }
        }
    }
}
