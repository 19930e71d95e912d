//! What the engine pushes down to storage.
//!
//! Selectors are not fetched up front: each selector is fetched when its node is evaluated,
//! because only then are its exact time bounds known (offsets, `@`, subquery ranges and
//! lookback all shift them). What reaches storage is the selector's matchers, those bounds, and
//! [`SelectHints`] describing the enclosing function (`rate`, ...), its range, the query step and
//! the grouping of an enclosing aggregation, so that a remote or pre-aggregating store can do
//! less work.

use crate::eval::HintCtx;
use crate::storage::SelectHints;

/// Builds the hints for one select.
pub(crate) fn hints(start: i64, end: i64, step: i64, range: i64, ctx: &HintCtx) -> SelectHints {
    let (by, grouping) = match &ctx.grouping {
        Some((by, g)) => (*by, g.clone()),
        None => (false, Vec::new()),
    };
    SelectHints {
        start,
        end,
        step,
        func: ctx.func.clone(),
        range,
        grouping,
        by,
    }
}
