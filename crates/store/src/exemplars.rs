//! `thanos.Exemplars` over the TSDBs of a [`TsdbSource`]: the exemplars of the series a query's
//! selectors match, with each TSDB's external labels, as Thanos receivers answer it.

use std::collections::BTreeMap;

use proto::thanos::exemplars_server::Exemplars;
use proto::thanos::{exemplars_response, ExemplarData, ExemplarsRequest, ExemplarsResponse};
use tonic::{Request, Response, Status};
use tsdb::matcher::Matcher;
use tsdb::{Label, Labels};

use crate::service::{label_set_of, TsdbStore};
use crate::tenancy::TENANT_METADATA;
use crate::{matchers_for_tsdb, TsdbSource};

/// Every selector's matcher sets against every TSDB, merged per series (external labels win).
pub(crate) fn select<S: TsdbSource>(
    source: &S,
    tenant: Option<(&str, &str)>,
    query: &str,
    start: i64,
    end: i64,
) -> Result<Vec<ExemplarsResponse>, Status> {
    let selectors = promql::query_selectors(query)
        .map_err(|e| Status::invalid_argument(format!("query {query:?}: {e}")))?;
    let tenant_matcher = tenant.map(|(name, value)| Matcher::equal(name, value));
    let mut merged: BTreeMap<Labels, Vec<tsdb::exemplars::Exemplar>> = BTreeMap::new();
    for (external, db) in source.tsdbs() {
        let mut sets: Vec<Vec<Matcher>> = Vec::new();
        for set in selectors.iter().flatten() {
            let mut set = set.clone();
            set.extend(tenant_matcher.clone());
            if let Some(rest) = matchers_for_tsdb(&set, &external) {
                sets.push(rest);
            }
        }
        if sets.is_empty() {
            continue;
        }
        for s in db.head().exemplars().select(start, end, &sets) {
            let mut labels: Vec<Label> = s
                .series_labels
                .iter()
                .filter(|l| !external.contains_key(l.name.as_ref()))
                .cloned()
                .collect();
            labels.extend(
                external
                    .iter()
                    .map(|(k, v)| Label::new(k.as_str(), v.as_str())),
            );
            let labels =
                Labels::from_pairs(labels.iter().map(|l| (l.name.as_ref(), l.value.as_ref())));
            let slot = merged.entry(labels).or_default();
            slot.extend(s.exemplars);
        }
    }
    Ok(merged
        .into_iter()
        .map(|(labels, mut exemplars)| {
            exemplars.sort_by(|a, b| {
                a.ts.cmp(&b.ts)
                    .then_with(|| a.labels.cmp(&b.labels))
                    .then_with(|| a.value.total_cmp(&b.value))
            });
            exemplars.dedup_by(|a, b| {
                a.ts == b.ts && a.labels == b.labels && a.value.to_bits() == b.value.to_bits()
            });
            ExemplarsResponse {
                result: Some(exemplars_response::Result::Data(ExemplarData {
                    series_labels: Some(label_set_of(&labels)),
                    exemplars: exemplars
                        .into_iter()
                        .map(|e| proto::thanos::Exemplar {
                            labels: Some(label_set_of(&e.labels)),
                            value: e.value,
                            ts: e.ts,
                        })
                        .collect(),
                })),
            }
        })
        .collect())
}

#[tonic::async_trait]
impl<S: TsdbSource> Exemplars for TsdbStore<S> {
    type ExemplarsStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<ExemplarsResponse, Status>>>;

    async fn exemplars(
        &self,
        request: Request<ExemplarsRequest>,
    ) -> Result<Response<Self::ExemplarsStream>, Status> {
        let tenant = request
            .metadata()
            .get(TENANT_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let req = request.into_inner();
        let store = self.clone();
        let frames = tokio::task::spawn_blocking(move || {
            let tenant_label = store.tenant_label().to_string();
            select(
                store.source(),
                tenant.as_deref().map(|t| (tenant_label.as_str(), t)),
                &req.query,
                req.start,
                req.end,
            )
        })
        .await
        .map_err(|e| Status::internal(format!("exemplars failed: {e}")))??;
        Ok(Response::new(tokio_stream::iter(
            frames.into_iter().map(Ok).collect::<Vec<_>>(),
        )))
    }
}
