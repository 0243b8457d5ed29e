//! AdminService: counters, verification and rebuild of the aggregates.

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::proto::v1 as pb;
use crate::proto::v1::admin_service_server::AdminService;
use crate::store::{reads, Store};

#[derive(Debug, Clone)]
pub struct AdminApi {
    store: Store,
}

impl AdminApi {
    pub fn new(store: Store) -> Self {
        AdminApi { store }
    }
}

fn non_negative(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[tonic::async_trait]
impl AdminService for AdminApi {
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
            mismatches = report.mismatch_count,
            "aggregates verified"
        );
        Ok(Response::new(pb::VerifyAggregatesResponse {
            groups_checked: report.groups_checked,
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
}
