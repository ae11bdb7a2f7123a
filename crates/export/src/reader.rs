//! Committed parts read ahead: a task on the runtime keeps [`PARTS_IN_FLIGHT`] reads going
//! and hands the parts over in export order through a bounded channel, so the blocking decoder
//! works on one part while the next ones download. Memory: the window, the channel's
//! [`PARTS_READY`] and the part being decoded.

use bytes::Bytes;
use futures::StreamExt;
use rubricmill_store::JobStore;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::ExportError;

/// Part reads in flight at once.
pub const PARTS_IN_FLIGHT: usize = 4;
/// Parts read and waiting for the decoder.
pub const PARTS_READY: usize = 2;

/// Parts in the order given, read ahead of the consumer.
pub struct PartReader {
    receiver: mpsc::Receiver<Result<(String, Bytes), ExportError>>,
    task: tokio::task::JoinHandle<()>,
}

impl PartReader {
    /// Starts reading `paths` (relative to the job folder) on the runtime of `handle`.
    pub fn start(handle: &Handle, job: &JobStore, paths: Vec<String>) -> Self {
        let (sender, receiver) = mpsc::channel(PARTS_READY);
        let job = job.clone();
        let task = handle.spawn(async move {
            let mut reads = futures::stream::iter(paths)
                .map(|path| {
                    let job = job.clone();
                    async move {
                        let bytes = job.read(&path).await.map_err(ExportError::from);
                        bytes.map(|bytes| (path, bytes))
                    }
                })
                .buffered(PARTS_IN_FLIGHT);
            while let Some(part) = reads.next().await {
                let failed = part.is_err();
                if sender.send(part).await.is_err() || failed {
                    break;
                }
            }
        });
        Self { receiver, task }
    }

    /// The next part, blocking the calling (blocking-pool) thread; `None` after the last.
    pub fn next_part(&mut self) -> Option<Result<(String, Bytes), ExportError>> {
        self.receiver.blocking_recv()
    }
}

impl Drop for PartReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}
