//! AdminService: counters, verification and rebuild of the aggregates, export,
//! and an echo for measuring the transport.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_server::AdminService;
use crate::store::{reads, Snapshot, Store};

use super::convert;

#[derive(Debug, Clone)]
pub struct AdminApi {
    store: Store,
}

impl AdminApi {
    pub fn new(store: Store) -> Self {
        AdminApi { store }
    }
}

/// Items per message of the export stream.
const EXPORT_CHUNK: usize = 1000;

/// Reads the spooled snapshot and sends it in chunks until done, failed, or the
/// client goes away.
fn stream_snapshot(snapshot: Snapshot, sender: &mpsc::Sender<Result<pb::ExportResponse, Status>>) {
    let mut items = Vec::with_capacity(EXPORT_CHUNK);
    let mut sent = 0u64;
    for item in snapshot {
        match item {
            Ok(item) => items.push(convert::backup_item(&item)),
            Err(error) => {
                tracing::error!(%error, sent, "export failed");
                let _ = sender.blocking_send(Err(error.into()));
                return;
            }
        }
        if items.len() == EXPORT_CHUNK {
            sent += items.len() as u64;
            let chunk = pb::ExportResponse {
                items: std::mem::take(&mut items),
            };
            if sender.blocking_send(Ok(chunk)).is_err() {
                tracing::warn!(sent, "export abandoned by the client");
                return;
            }
        }
    }
    sent += items.len() as u64;
    if !items.is_empty() {
        let _ = sender.blocking_send(Ok(pb::ExportResponse { items }));
    }
    tracing::info!(items = sent, "export streamed");
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    type ExportStream = ReceiverStream<Result<pb::ExportResponse, Status>>;

    #[tracing::instrument(skip_all)]
    async fn export(
        &self,
        _request: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let snapshot = self.store.snapshot().await?;
        tracing::info!(items = snapshot.len(), "export snapshot taken");
        let (sender, receiver) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || stream_snapshot(snapshot, &sender));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let store = self.store.clone();
        let (counters, size) = tokio::task::spawn_blocking(move || {
            Ok::<_, Error>((reads::counters(store.kv())?, store.kv().size_on_disk()?))
        })
        .await
        .map_err(|e| Error::Internal(format!("stats task failed: {e}")))??;
        Ok(Response::new(pb::GetStatsResponse {
            interactions: non_negative(counters.interactions),
            survey_responses: non_negative(counters.survey_responses),
            quality_reviews: non_negative(counters.quality_reviews),
            customer_events: non_negative(counters.customer_events),
            tickets: non_negative(counters.tickets),
            pending_survey_responses: non_negative(counters.pending_survey_responses),
            pending_quality_reviews: non_negative(counters.pending_quality_reviews),
            store_size_bytes: size,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_aggregates(
        &self,
        _request: Request<pb::VerifyAggregatesRequest>,
    ) -> Result<Response<pb::VerifyAggregatesResponse>, Status> {
        let report = self.store.verify().await?;
        tracing::info!(
            groups = report.groups_checked,
            keys = report.keys_checked,
            values = report.values_checked,
            damaged = report.damaged_values,
            mismatches = report.mismatch_count,
            "aggregates verified"
        );
        Ok(Response::new(pb::VerifyAggregatesResponse {
            groups_checked: report.groups_checked,
            values_checked: report.values_checked,
            damaged_values: report.damaged_values,
            keys_checked: report.keys_checked,
            mismatch_count: report.mismatch_count,
            mismatches: report
                .mismatches
                .into_iter()
                .map(|(key, description)| pb::Mismatch { key, description })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn rebuild_aggregates(
        &self,
        _request: Request<pb::RebuildAggregatesRequest>,
    ) -> Result<Response<pb::RebuildAggregatesResponse>, Status> {
        let report = self.store.rebuild().await?;
        Ok(Response::new(pb::RebuildAggregatesResponse {
            groups_rebuilt: report.groups_rebuilt,
            keys_written: report.keys_written,
        }))
    }

    async fn echo(
        &self,
        request: Request<pb::EchoRequest>,
    ) -> Result<Response<pb::EchoResponse>, Status> {
        Ok(Response::new(pb::EchoResponse {
            payload: request.into_inner().payload,
        }))
    }
}
