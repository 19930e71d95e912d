//! The read side: sorted series lookups and the head's [`Querier`].

use std::sync::Arc;

use super::series::MemSeries;
use super::Head;
use crate::matcher::{postings_for_matchers, Matcher, PostingsIndex};
use crate::querier::{names_of, values_of, Querier, Series};
use crate::Result;

impl Head {
    /// Every series, sorted by labels.
    pub fn all_series_sorted(&self) -> Vec<Arc<MemSeries>> {
        let mut all: Vec<_> = self
            .index
            .read()
            .unwrap()
            .by_ref
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all
    }

    /// Series with these refs, sorted by labels.
    pub fn series_sorted(&self, refs: &[u64]) -> Vec<Arc<MemSeries>> {
        let index = self.index.read().unwrap();
        let mut out: Vec<_> = refs
            .iter()
            .filter_map(|r| index.by_ref.get(r).cloned())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// A querier over the head (or a shared handle to it).
pub struct HeadQuerier(pub Arc<Head>);

impl HeadQuerier {
    fn matching(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Arc<MemSeries>>> {
        let head = &self.0;
        if head.is_empty() || maxt < head.min_time() || mint > head.max_time() {
            return Ok(Vec::new());
        }
        let refs = postings_for_matchers(&**head, matchers)?;
        Ok(head.series_sorted(&refs))
    }
}

impl Querier for HeadQuerier {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>> {
        Ok(self
            .matching(matchers, mint, maxt)?
            .into_iter()
            .filter_map(|s| {
                let chunks = s.chunks(mint, maxt);
                (!chunks.is_empty()).then(|| Series {
                    labels: s.labels.clone(),
                    chunks,
                })
            })
            .collect())
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let head = &self.0;
        if head.is_empty() || maxt < head.min_time() || mint > head.max_time() {
            return Ok(Vec::new());
        }
        if matchers.is_empty() {
            return Ok(head.label_names());
        }
        Ok(names_of(&self.select(matchers, mint, maxt)?))
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let head = &self.0;
        if head.is_empty() || maxt < head.min_time() || mint > head.max_time() {
            return Ok(Vec::new());
        }
        if matchers.is_empty() {
            return head.label_values(name);
        }
        Ok(values_of(&self.select(matchers, mint, maxt)?, name))
    }
}
