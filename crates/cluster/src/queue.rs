//! The shard work queue on JetStream: [`NatsWorkQueue`] implements the same [`WorkQueue`] the
//! embedded mode's in-process queue does, so the worker loop is shared.
//!
//! A pull asks for exactly the capacity the worker has free: it waits (up to `pull_wait`) for
//! one message, then takes whatever else is already available up to the free capacity without
//! waiting. Both requests are complete when they return, so no message is left buffered in the
//! client with its ack timer running while it waits for capacity.
//!
//! A shard *released* while its provider batch works ([`Delivery::release`]) is acked and
//! published again with a [`NOT_BEFORE_HEADER`]: a delivery of it before that time goes straight
//! back with a nak delayed to the time, without reaching the worker. Publishing needs the
//! subject free, so the ack comes first; if the publish then fails the shard is in no state, and
//! the coordinator's idle sweep queues it again.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{AckKind, Message};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use rubricmill_queue::{Delivery, QueueError, ShardTask, WorkQueue};
use tokio::sync::watch;

use crate::state::encode;
use crate::{Cluster, ClusterError, FailedShard};

/// Header of a released shard's message: unix milliseconds before which no worker takes it.
pub const NOT_BEFORE_HEADER: &str = "Rubricmill-Not-Before";

/// Milliseconds since the unix epoch, now.
fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

/// The not-before time a message carries, if any.
fn not_before_ms(message: &Message) -> Option<u64> {
    message
        .headers
        .as_ref()?
        .get(NOT_BEFORE_HEADER)?
        .as_str()
        .parse()
        .ok()
}

/// What became of publishing one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    Queued,
    /// A message for this shard is already in the stream (queued or running).
    AlreadyQueued,
}

#[derive(Clone)]
pub struct NatsWorkQueue {
    cluster: Cluster,
    consumer: PullConsumer,
    max_deliver: u32,
    pull_wait: Duration,
    /// Part of the message ids this queue publishes (see `JobRecord::generation`).
    generation: u64,
    /// Turns true on `close`; shared by clones.
    closed: Arc<watch::Sender<bool>>,
}

impl NatsWorkQueue {
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        let consumer: PullConsumer = cluster
            .stream
            .get_consumer(&cluster.names.consumer())
            .await
            .map_err(|e| ClusterError::js("opening the worker consumer", e))?;
        let max_deliver = u32::try_from(consumer.cached_info().config.max_deliver)
            .unwrap_or(u32::MAX)
            .max(1);
        Ok(Self {
            cluster: cluster.clone(),
            consumer,
            max_deliver,
            pull_wait: Duration::from_secs(5),
            generation: 0,
            closed: Arc::new(watch::channel(false).0),
        })
    }

    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    pub fn with_pull_wait(mut self, wait: Duration) -> Self {
        self.pull_wait = wait;
        self
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Publishes a shard unless a message for it is already in the stream. The message id
    /// makes a retried publish (after a lost ack) a no-op within the duplicate window.
    pub async fn publish_shard(&self, task: &ShardTask) -> Result<PublishOutcome, ClusterError> {
        let subject = self
            .cluster
            .names
            .shard_subject(&task.job, task.shard.id.as_str());
        let message_id = format!("{}:g{}", task.message_id(), self.generation);
        let publish = PublishMessage::build()
            .payload(encode(task))
            .message_id(message_id);
        let acked = match self.cluster.js.send_publish(subject, publish).await {
            Ok(future) => future.await,
            Err(error) => return Err(ClusterError::js("publishing a shard", error)),
        };
        match acked {
            Ok(_) => Ok(PublishOutcome::Queued),
            Err(error) if is_subject_full(&error.to_string()) => Ok(PublishOutcome::AlreadyQueued),
            Err(error) => Err(ClusterError::js(
                format!("publishing shard {}", task.shard.id),
                error,
            )),
        }
    }

    /// Publishes many shards with up to 256 publishes awaiting their acks at once.
    pub async fn publish_all(
        &self,
        tasks: Vec<ShardTask>,
    ) -> Result<Vec<PublishOutcome>, ClusterError> {
        futures::stream::iter(tasks)
            .map(|task| async move { self.publish_shard(&task).await })
            .buffered(256)
            .try_collect()
            .await
    }

    async fn next_message(&self, wait: Duration, max: usize) -> Result<Vec<Message>, ClusterError> {
        let request = self
            .consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages();
        let mut batch = request
            .await
            .map_err(|e| ClusterError::js("pulling a shard", e))?;
        let request_ends = wait + Duration::from_secs(5);
        let mut closed = self.closed.subscribe();
        let first = tokio::select! {
            first = tokio::time::timeout(request_ends, batch.next()) => first,
            () = until_true(&mut closed) => {
                // The pull request stays open on the server until it expires: whatever it
                // still delivers goes straight back.
                let leftovers = tokio::time::timeout(request_ends, async {
                    while let Some(Ok(message)) = batch.next().await {
                        let _ = message.double_ack_with(AckKind::Nak(None)).await;
                    }
                });
                let _ = leftovers.await;
                return Ok(Vec::new());
            }
        };
        let first = match first {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => return Err(ClusterError::js("pulling a shard", error)),
            Ok(None) | Err(_) => return Ok(Vec::new()),
        };
        let mut messages = vec![first];
        if max > 1 {
            let more = self
                .consumer
                .fetch()
                .max_messages(max - 1)
                .messages()
                .await
                .map_err(|e| ClusterError::js("pulling shards", e))?;
            let more: Vec<Message> = more
                .take(max - 1)
                .filter_map(|m| async move { m.ok() })
                .collect()
                .await;
            messages.extend(more);
        }
        Ok(messages)
    }

    /// A message whose payload is not a shard task cannot be processed by anyone: record it
    /// as failed (when its subject names the shard) and term it.
    async fn reject_undecodable(&self, message: Message, error: serde_json::Error) {
        let subject = message.subject.to_string();
        tracing::error!(subject = %subject, error = %error, "undecodable shard message");
        if let Some((job, shard)) = self.cluster.names.parse_shard_subject(&subject) {
            let failed = FailedShard {
                job,
                shard,
                reason: format!("undecodable shard message: {error}"),
                attempts: 1,
                worker: None,
                at: Utc::now(),
            };
            if let Err(error) = self.cluster.record_failure(&failed).await {
                tracing::warn!(error = %error, "cannot record an undecodable shard");
            }
        }
        let _ = message.ack_with(AckKind::Term).await;
    }
}

/// Resolves once the flag is true (or its sender is gone).
async fn until_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|value| *value).await;
}

/// The server refuses a message on a subject that already holds one (our per-subject limit).
fn is_subject_full(error: &str) -> bool {
    error.contains("maximum messages per subject")
}

#[async_trait::async_trait]
impl WorkQueue for NatsWorkQueue {
    async fn publish(&self, task: ShardTask) -> Result<(), QueueError> {
        self.publish_shard(&task).await?;
        Ok(())
    }

    fn close(&self) {
        self.closed.send_replace(true);
    }

    async fn pull(&self, max: usize) -> Result<Option<Vec<Box<dyn Delivery>>>, QueueError> {
        loop {
            if self.is_closed() {
                return Ok(None);
            }
            let messages = match self.next_message(self.pull_wait, max.max(1)).await {
                Ok(messages) => messages,
                Err(error) => {
                    // Reconnects happen underneath; keep asking.
                    tracing::warn!(error = %error, "pull failed, retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let mut deliveries: Vec<Box<dyn Delivery>> = Vec::with_capacity(messages.len());
            for message in messages {
                let not_before = not_before_ms(&message);
                if let Some(wait) = not_before.and_then(|at| at.checked_sub(now_ms()))
                    && wait > 0
                {
                    let delay = Duration::from_millis(wait);
                    if let Err(error) = message.double_ack_with(AckKind::Nak(Some(delay))).await {
                        tracing::warn!(error = %error, "cannot put a released shard back");
                    }
                    continue;
                }
                match serde_json::from_slice::<ShardTask>(&message.payload) {
                    Ok(task) => {
                        let info = message.info().ok();
                        // The early delivery of a released shard, naked above, is no attempt.
                        let early = u32::from(not_before.is_some());
                        let attempt = info.as_ref().map_or(1, |info| {
                            u32::try_from(info.delivered)
                                .unwrap_or(1)
                                .saturating_sub(early)
                                .max(1)
                        });
                        let queued_at = info.map(|info| info.published.into());
                        deliveries.push(Box::new(NatsDelivery {
                            cluster: self.cluster.clone(),
                            message,
                            task,
                            attempt,
                            queued_at,
                            max_deliver: self.max_deliver,
                        }));
                    }
                    Err(error) => self.reject_undecodable(message, error).await,
                }
            }
            if !deliveries.is_empty() {
                return Ok(Some(deliveries));
            }
        }
    }
}

/// One shard message delivered to this worker.
pub struct NatsDelivery {
    cluster: Cluster,
    message: Message,
    task: ShardTask,
    attempt: u32,
    /// When JetStream stored the message.
    queued_at: Option<std::time::SystemTime>,
    max_deliver: u32,
}

impl NatsDelivery {
    /// Sends an acknowledgement of `kind` and waits for the server to confirm it: a worker
    /// that hands a shard back and exits must not lose the nak in its send buffer.
    async fn send(&self, kind: AckKind, what: &str) -> Result<(), QueueError> {
        self.message
            .double_ack_with(kind)
            .await
            .map_err(|e| QueueError::Backend(format!("{what}: {e}")))
    }
}

#[async_trait::async_trait]
impl Delivery for NatsDelivery {
    fn task(&self) -> &ShardTask {
        &self.task
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn queued_at(&self) -> Option<std::time::SystemTime> {
        self.queued_at
    }

    fn max_deliver(&self) -> u32 {
        self.max_deliver
    }

    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        // Confirmed by the server: the commit is already durable, and a lost ack would only
        // cost a redelivery that finds the marker.
        self.message
            .double_ack()
            .await
            .map_err(|e| QueueError::Backend(format!("ack: {e}")))
    }

    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.send(AckKind::Nak(delay), "nak").await
    }

    async fn release(self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        self.message
            .double_ack()
            .await
            .map_err(|e| QueueError::Backend(format!("ack before release: {e}")))?;
        let not_before = now_ms() + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX / 2);
        let subject = self
            .cluster
            .names
            .shard_subject(&self.task.job, self.task.shard.id.as_str());
        let publish = PublishMessage::build()
            .payload(encode(&self.task))
            .message_id(format!("{}:r{not_before}", self.task.message_id()))
            .header(NOT_BEFORE_HEADER, not_before.to_string().as_str());
        let acked = match self.cluster.js.send_publish(subject, publish).await {
            Ok(future) => future.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        acked.map_err(|error| {
            QueueError::Backend(format!(
                "publishing released shard {} (the coordinator's sweep queues it again): {error}",
                self.task.shard.id
            ))
        })
    }

    async fn term(self: Box<Self>) -> Result<(), QueueError> {
        self.send(AckKind::Term, "term").await
    }

    async fn progress(&self) -> Result<(), QueueError> {
        // A heartbeat need not wait for its confirmation; the next one follows soon.
        self.message
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| QueueError::Backend(format!("progress: {e}")))
    }
}
