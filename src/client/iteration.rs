//! Checkpoints of iterable jobs (`lib/fiber_job/iterable_job.rb`): where a job over
//! many items stopped, so that a retry, a requeue at shutdown or a recovery after a
//! crash resumes there. One hash per job (`Keys::iteration`), in its queue's slot;
//! every write is one `MULTI` that also refreshes its expiry.

use std::sync::Arc;

use super::Handle;
use crate::error::Result;
use crate::runtime::cancel::Cancel;

pub struct Checkpoints {
    handle: Arc<Handle>,
}

impl Checkpoints {
    pub fn new(handle: Arc<Handle>) -> Checkpoints {
        Checkpoints { handle }
    }

    /// Writes `fields` (name, value) to the checkpoint of job `jid` of `queue` and keeps
    /// it `ttl_secs`. Returns whether the job was cancelled meanwhile (read in the same
    /// transaction, so a running job learns of a cancel at its next checkpoint).
    pub fn write(
        &self,
        cancel: &Cancel,
        queue: &str,
        jid: &str,
        fields: &[(String, String)],
        ttl_secs: u64,
    ) -> Result<bool> {
        let key = self.handle.keys.iteration(queue, jid);
        self.handle.call(cancel, |mut c| {
            let mut pipe = redis::pipe();
            pipe.atomic();
            if !fields.is_empty() {
                pipe.cmd("HSET").arg(&key).arg(fields).ignore();
            }
            pipe.cmd("EXPIRE").arg(&key).arg(ttl_secs).ignore();
            pipe.cmd("HEXISTS").arg(&key).arg("cancelled");
            async move {
                let (cancelled,): (bool,) = pipe.query_async(&mut c).await?;
                Ok(cancelled)
            }
        })
    }

    /// The checkpoint of job `jid` (field, value pairs; empty when it has none).
    pub fn read(&self, cancel: &Cancel, queue: &str, jid: &str) -> Result<Vec<(String, String)>> {
        let key = self.handle.keys.iteration(queue, jid);
        self.handle.call(cancel, |mut c| {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(&key);
            async move { cmd.query_async(&mut c).await }
        })
    }

    /// Forgets the checkpoint of a job that finished (or died).
    pub fn delete(&self, cancel: &Cancel, queue: &str, jid: &str) -> Result<()> {
        let key = self.handle.keys.iteration(queue, jid);
        self.handle.call(cancel, |mut c| {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(&key);
            async move { cmd.query_async(&mut c).await }
        })
    }
}
