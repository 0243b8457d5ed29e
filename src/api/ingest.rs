//! IngestService: validate each record, hand it to the store's writer, answer
//! once it is durable.

use tonic::{Request, Response, Status};

use crate::domain::records::Record;
use crate::error::{Error, FieldViolation};
use crate::proto::v1 as pb;
use crate::proto::v1::ingest_service_server::IngestService;
use crate::store::Store;

use super::convert;
use super::validate::{self, required};

/// A batch holds at most this many records.
pub const MAX_BATCH_RECORDS: usize = 1000;

#[derive(Debug, Clone)]
pub struct IngestApi {
    store: Store,
}

impl IngestApi {
    pub fn new(store: Store) -> Self {
        IngestApi { store }
    }

    async fn record_one(
        &self,
        record: Result<Record, Vec<FieldViolation>>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let record = record.map_err(Error::InvalidArgument)?;
        let outcome = self
            .store
            .record(vec![record])
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("the writer returned no outcome".into()))??;
        tracing::debug!(outcome = ?outcome, "record written");
        Ok(Response::new(pb::RecordResponse {
            outcome: convert::outcome(outcome) as i32,
        }))
    }
}

#[tonic::async_trait]
impl IngestService for IngestApi {
    #[tracing::instrument(skip_all, fields(interaction = %request.get_ref().interaction.as_ref().map(|i| i.interaction_id.as_str()).unwrap_or("")))]
    async fn record_interaction(
        &self,
        request: Request<pb::RecordInteractionRequest>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let raw = required(request.get_ref().interaction.as_ref(), "interaction")?;
        self.record_one(validate::interaction(raw, "interaction").map(Record::Interaction))
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn record_survey_response(
        &self,
        request: Request<pb::RecordSurveyResponseRequest>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let raw = required(
            request.get_ref().survey_response.as_ref(),
            "survey_response",
        )?;
        self.record_one(
            validate::survey_response(raw, "survey_response").map(Record::SurveyResponse),
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn record_quality_review(
        &self,
        request: Request<pb::RecordQualityReviewRequest>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let raw = required(request.get_ref().quality_review.as_ref(), "quality_review")?;
        self.record_one(validate::quality_review(raw, "quality_review").map(Record::QualityReview))
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn record_customer_event(
        &self,
        request: Request<pb::RecordCustomerEventRequest>,
    ) -> Result<Response<pb::RecordResponse>, Status> {
        let raw = required(request.get_ref().customer_event.as_ref(), "customer_event")?;
        self.record_one(validate::customer_event(raw, "customer_event").map(Record::CustomerEvent))
            .await
    }

    #[tracing::instrument(skip_all, fields(records = request.get_ref().records.len()))]
    async fn record_batch(
        &self,
        request: Request<pb::RecordBatchRequest>,
    ) -> Result<Response<pb::RecordBatchResponse>, Status> {
        let raw = &request.get_ref().records;
        if raw.is_empty() || raw.len() > MAX_BATCH_RECORDS {
            return Err(Error::invalid(
                "records",
                format!(
                    "must hold 1 to {MAX_BATCH_RECORDS} records, not {}",
                    raw.len()
                ),
            )
            .into());
        }
        let mut results: Vec<Option<pb::item_result::Result>> = vec![None; raw.len()];
        let mut valid = Vec::new();
        let mut valid_positions = Vec::new();
        for (index, item) in raw.iter().enumerate() {
            match validate::record(item, "") {
                Ok(record) => {
                    valid.push(record);
                    valid_positions.push(index);
                }
                Err(violations) => {
                    results[index] = Some(item_error(Error::InvalidArgument(violations)));
                }
            }
        }
        if !valid.is_empty() {
            let outcomes = self.store.record(valid).await?;
            for (index, outcome) in valid_positions.into_iter().zip(outcomes) {
                results[index] = Some(match outcome {
                    Ok(outcome) => {
                        pb::item_result::Result::Outcome(convert::outcome(outcome) as i32)
                    }
                    Err(error) => item_error(error),
                });
            }
        }
        let rejected = results
            .iter()
            .filter(|r| matches!(r, Some(pb::item_result::Result::Error(_))))
            .count();
        tracing::info!(records = raw.len(), rejected, "batch recorded");
        Ok(Response::new(pb::RecordBatchResponse {
            results: results
                .into_iter()
                .enumerate()
                .map(|(index, result)| pb::ItemResult {
                    index: index as u32,
                    result,
                })
                .collect(),
        }))
    }
}

fn item_error(error: Error) -> pb::item_result::Result {
    let field_violations = match &error {
        Error::InvalidArgument(violations) => violations
            .iter()
            .map(|v| pb::FieldViolation {
                field: v.field.clone(),
                description: v.description.clone(),
            })
            .collect(),
        _ => Vec::new(),
    };
    pb::item_result::Result::Error(pb::ItemError {
        code: error.code_name().to_owned(),
        message: error.message(),
        field_violations,
    })
}
