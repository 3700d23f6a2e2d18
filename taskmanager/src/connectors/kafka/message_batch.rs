//! Takes a consumer's fetched messages off its queue many at a time
//! (`rd_kafka_consume_batch_queue`) instead of one poll per message: the per-message
//! event, its reference-counted wrapper and the queue round trip of `BaseConsumer::poll`
//! cost more than the Kafka source does with a record (measured in BENCHMARKS.md).
//! librdkafka serves everything else it finds on the queue on the way (offset-commit
//! results, errors), skips transaction control records, and reports a partition's end as a
//! message carrying `PARTITION_EOF` with its topic and partition.
//!
//! It also reads librdkafka's cached high watermarks (for the partitions' lag). This is the
//! only place the Kafka source touches librdkafka's C API directly; the safety argument is
//! at each `unsafe` block.

use std::ffi::CStr;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

/// A reference to a consumer's message queue; it must not outlive the consumer, which
/// [`MessageQueue::new`]'s borrow ties it to.
pub struct MessageQueue<'c> {
    queue: NonNull<rd::rd_kafka_queue_t>,
    _consumer: std::marker::PhantomData<&'c ()>,
}

// SAFETY: librdkafka queues may be used from any thread (they lock internally); the
// handle is only used by the thread that owns this value.
unsafe impl Send for MessageQueue<'_> {}

impl<'c> MessageQueue<'c> {
    /// The queue of a consumer that joined a group (`group.id` set), where its messages
    /// arrive; `None` otherwise.
    pub fn new<C: ConsumerContext>(consumer: &'c BaseConsumer<C>) -> Option<Self> {
        use rdkafka::consumer::Consumer;
        // SAFETY: the client pointer is valid while `consumer` lives; the call returns a
        // new reference (or null) that `Drop` releases.
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        NonNull::new(queue).map(|queue| Self {
            queue,
            _consumer: std::marker::PhantomData,
        })
    }

    /// Waits up to `timeout` for the first message, then takes what is queued, up to
    /// `batch`'s capacity. Any messages `batch` still held are released first.
    pub fn consume(&self, timeout: Duration, batch: &mut MessageBatch) {
        batch.release();
        let capacity = batch.messages.capacity();
        // SAFETY: the array has room for `capacity` pointers; librdkafka fills the first
        // `n` and hands over ownership of each message, which `release` gives back.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(
                self.queue.as_ptr(),
                timeout.as_millis().min(i32::MAX as u128) as i32,
                batch.messages.as_mut_ptr(),
                capacity,
            )
        };
        if n > 0 {
            // SAFETY: librdkafka initialised the first `n` entries.
            unsafe { batch.messages.set_len(n as usize) };
        }
    }
}

/// The offset after the last record of `topic`/`partition` as of the consumer's latest
/// fetch response, from librdkafka's cache (no request to the broker); `None` before the
/// first fetch.
pub fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    use rdkafka::consumer::Consumer;
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; `topic` is a valid C
    // string for the call; librdkafka writes the two offsets and keeps no pointer.
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

impl Drop for MessageQueue<'_> {
    fn drop(&mut self) {
        // SAFETY: releases the reference `new` took.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
    }
}

/// Messages taken off a queue; they are released on the next `consume` or on drop.
pub struct MessageBatch {
    messages: Vec<*mut rd::rd_kafka_message_t>,
}

// SAFETY: the messages are owned by this value alone; librdkafka allows destroying a
// message from any thread.
unsafe impl Send for MessageBatch {}

impl MessageBatch {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            messages: Vec::with_capacity(capacity.max(1)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = QueuedMessage<'_>> {
        self.messages.iter().map(|m| {
            // SAFETY: every pointer in `messages` is a live message owned by this batch.
            QueuedMessage {
                message: unsafe { &**m },
            }
        })
    }

    fn release(&mut self) {
        for m in self.messages.drain(..) {
            // SAFETY: each message is destroyed once, here, and not used after.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

impl Drop for MessageBatch {
    fn drop(&mut self) {
        self.release();
    }
}

/// One message of a [`MessageBatch`], borrowed from it.
pub struct QueuedMessage<'b> {
    message: &'b rd::rd_kafka_message_t,
}

/// What a queued message is.
pub enum Queued<'b> {
    Record {
        payload: &'b [u8],
        offset: i64,
    },
    /// The partition has no more records for now.
    End,
    Error(String),
}

impl<'b> QueuedMessage<'b> {
    /// The topic's name as bytes (no UTF-8 check: it is compared, not shown).
    pub fn topic(&self) -> &'b [u8] {
        if self.message.rkt.is_null() {
            return &[];
        }
        // SAFETY: a message's topic handle lives as long as the message and names its
        // topic with a NUL-terminated string.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.message.rkt)).to_bytes() }
    }

    pub fn partition(&self) -> i32 {
        self.message.partition
    }

    pub fn kind(&self) -> Queued<'b> {
        let err = self.message.err;
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let payload = if self.message.payload.is_null() {
                &[][..]
            } else {
                // SAFETY: `payload` points at `len` bytes owned by the message.
                unsafe { std::slice::from_raw_parts(self.message.payload as *const u8, self.message.len) }
            };
            return Queued::Record {
                payload,
                offset: self.message.offset,
            };
        }
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF {
            return Queued::End;
        }
        // SAFETY: librdkafka returns a NUL-terminated description owned by the message.
        let text = unsafe { CStr::from_ptr(rd::rd_kafka_message_errstr(self.message)) };
        Queued::Error(format!("{} ({})", text.to_string_lossy(), RDKafkaErrorCode::from(err)))
    }
}
