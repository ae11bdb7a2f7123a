//! The in-process queue and event channel of the embedded mode.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::{Delivery, EventSink, QueueError, ShardEvent, ShardTask, WorkQueue};

#[derive(Default)]
struct State {
    ready: VecDeque<(ShardTask, u32)>,
    seen: HashSet<String>,
    closed: bool,
}

/// A work queue in memory. Closing it lets idle workers exit.
#[derive(Clone)]
pub struct InProcessQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    max_deliver: u32,
}

impl InProcessQueue {
    pub fn new(max_deliver: u32) -> Self {
        Self {
            state: Arc::default(),
            notify: Arc::new(Notify::new()),
            max_deliver: max_deliver.max(1),
        }
    }

    /// No more deliveries: pulls return `None` from now on.
    pub fn close(&self) {
        self.state.lock().expect("queue lock").closed = true;
        self.notify.notify_waiters();
    }

    fn requeue(&self, task: ShardTask, attempt: u32) {
        self.state
            .lock()
            .expect("queue lock")
            .ready
            .push_back((task, attempt));
        self.notify.notify_waiters();
    }
}

#[async_trait::async_trait]
impl WorkQueue for InProcessQueue {
    async fn publish(&self, task: ShardTask) -> Result<(), QueueError> {
        {
            let mut state = self.state.lock().expect("queue lock");
            if state.closed {
                return Err(QueueError::Closed);
            }
            if !state.seen.insert(task.message_id()) {
                return Ok(());
            }
            state.ready.push_back((task, 0));
        }
        self.notify.notify_waiters();
        Ok(())
    }

    fn close(&self) {
        InProcessQueue::close(self);
    }

    async fn pull(&self, max: usize) -> Result<Option<Vec<Box<dyn Delivery>>>, QueueError> {
        loop {
            let notified = self.notify.notified();
            {
                let mut state = self.state.lock().expect("queue lock");
                if state.closed {
                    return Ok(None);
                }
                if !state.ready.is_empty() {
                    let take = max.max(1).min(state.ready.len());
                    let deliveries = state
                        .ready
                        .drain(..take)
                        .map(|(task, previous)| {
                            Box::new(InProcessDelivery {
                                task,
                                attempt: previous + 1,
                                queue: self.clone(),
                            }) as Box<dyn Delivery>
                        })
                        .collect();
                    return Ok(Some(deliveries));
                }
            }
            notified.await;
        }
    }
}

struct InProcessDelivery {
    task: ShardTask,
    attempt: u32,
    queue: InProcessQueue,
}

#[async_trait::async_trait]
impl Delivery for InProcessDelivery {
    fn task(&self) -> &ShardTask {
        &self.task
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn max_deliver(&self) -> u32 {
        self.queue.max_deliver
    }

    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        Ok(())
    }

    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        let InProcessDelivery {
            task,
            attempt,
            queue,
        } = *self;
        if delay.is_zero() {
            queue.requeue(task, attempt);
            return Ok(());
        }
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.requeue(task, attempt);
        });
        Ok(())
    }

    async fn release(self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        // The delivery did not count: the next one has this one's number again.
        let attempt = self.attempt.saturating_sub(1);
        let InProcessDelivery { task, queue, .. } = *self;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.requeue(task, attempt);
        });
        Ok(())
    }

    async fn term(self: Box<Self>) -> Result<(), QueueError> {
        Ok(())
    }

    async fn progress(&self) -> Result<(), QueueError> {
        Ok(())
    }
}

/// Event channel of the embedded mode.
#[derive(Clone)]
pub struct InProcessEvents {
    tx: mpsc::UnboundedSender<ShardEvent>,
}

impl InProcessEvents {
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<ShardEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }
}

#[async_trait::async_trait]
impl EventSink for InProcessEvents {
    async fn send(&self, event: ShardEvent) {
        // The receiver is gone only when the run is over; nothing is left to tell.
        let _ = self.tx.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rubricmill_core::{ShardSpec, ShardUnit};

    fn task(n: u64) -> ShardTask {
        ShardTask {
            job: "j".into(),
            shard: ShardSpec::new(ShardUnit::Files { files: vec![] }, n),
        }
    }

    fn task_with_file(name: &str) -> ShardTask {
        let file = rubricmill_core::FileRef {
            url: name.into(),
            size: 1,
            etag: None,
            last_modified: "t".into(),
        };
        ShardTask {
            job: "j".into(),
            shard: ShardSpec::new(ShardUnit::Files { files: vec![file] }, 1),
        }
    }

    #[tokio::test]
    async fn publish_deduplicates_by_shard_id() {
        let queue = InProcessQueue::new(3);
        queue.publish(task(1)).await.unwrap();
        queue.publish(task(1)).await.unwrap();
        let pulled = queue.pull(10).await.unwrap().unwrap();
        assert_eq!(pulled.len(), 1);
    }

    #[tokio::test]
    async fn nak_redelivers_with_a_higher_attempt_and_close_ends_pulls() {
        let queue = InProcessQueue::new(3);
        queue.publish(task_with_file("a")).await.unwrap();
        queue.publish(task_with_file("b")).await.unwrap();
        let mut first = queue.pull(1).await.unwrap().unwrap();
        assert_eq!(first.len(), 1);
        let delivery = first.pop().unwrap();
        assert_eq!(delivery.attempt(), 1);
        let shard = delivery.task().shard.id.clone();
        delivery.nak(Duration::from_millis(5)).await.unwrap();
        let second = queue.pull(1).await.unwrap().unwrap();
        assert_ne!(
            second[0].task().shard.id,
            shard,
            "the other task comes first"
        );
        let third = queue.pull(1).await.unwrap().unwrap();
        assert_eq!(third[0].task().shard.id, shard);
        assert_eq!(third[0].attempt(), 2);
        queue.close();
        assert!(queue.pull(1).await.unwrap().is_none());
    }
}
