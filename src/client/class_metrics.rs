//! Per-class metrics as the acker writes them (`worker/acker/metrics.rs`): the Web
//! UI's Metrics pages and `/metrics` read them here.

use std::collections::HashMap;
use std::sync::Arc;

use super::Handle;
use crate::error::Result;
use crate::runtime::cancel::Cancel;
use crate::store::payload;

/// Per-class metrics: runs, failures and execution times per job class and minute.
pub struct ClassMetrics {
    handle: Arc<Handle>,
}

impl ClassMetrics {
    pub fn new(handle: Arc<Handle>) -> ClassMetrics {
        ClassMetrics { handle }
    }

    /// The all-time hash, and the `minutes` minute hashes up to now, oldest first, each
    /// as (epoch seconds of the minute, fields). Fields: `<class>|p`, `|f`, `|s`, `|b<i>`.
    #[allow(clippy::type_complexity)]
    pub fn read(
        &self,
        cancel: &Cancel,
        minutes: i64,
    ) -> Result<(HashMap<String, u64>, Vec<(i64, HashMap<String, u64>)>)> {
        let last = (payload::now() as i64) / 60;
        let span: Vec<i64> = (last - minutes + 1..=last).collect();
        let k = &self.handle.keys;
        let (total, each): (HashMap<String, u64>, Vec<HashMap<String, u64>>) =
            self.handle.call(cancel, |mut c| {
                let mut pipe = redis::pipe();
                pipe.cmd("HGETALL").arg(k.metrics_total());
                let mut minutes = redis::pipe();
                for m in &span {
                    minutes.cmd("HGETALL").arg(k.metrics_minute(*m));
                }
                async move {
                    let (total,): (HashMap<String, u64>,) = pipe.query_async(&mut c).await?;
                    let each: Vec<HashMap<String, u64>> = minutes.query_async(&mut c).await?;
                    Ok((total, each))
                }
            })?;
        Ok((total, span.iter().map(|m| m * 60).zip(each).collect()))
    }
}
