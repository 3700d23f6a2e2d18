//! The network exchange on a real gRPC server on 127.0.0.1: batches arrive intact and in
//! order with the control events between them, and a consumer that stops reading stops
//! its producer after a bounded number of batches (credits), then lets it go on as soon as
//! it reads again.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;
use weir_proto::taskmanager::task_manager_service_server::TaskManagerServiceServer;
use weir_taskmanager::exchange::NETWORK_CREDITS;
use weir_taskmanager::exchange::channel_key::ChannelKey;
use weir_taskmanager::exchange::inbound_channels::InboundChannels;
use weir_taskmanager::exchange::remote_sender::RemoteSender;
use weir_taskmanager::runtime::job_deployment::Exchange;
use weir_taskmanager::runtime::stream_event::StreamEvent;
use weir_taskmanager::transport::ClusterTransport;
use weir_taskmanager::worker::deployed_jobs::DeployedJobs;
use weir_taskmanager::worker::task_manager_service::TaskManagerApi;

/// Where the senders count their waits for credits (not checked here).
static WAITED: AtomicU64 = AtomicU64::new(0);

fn batch(first: i64, rows: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from_iter_values(first..first + rows))],
    )
    .unwrap()
}

/// Serves the task manager API on a free port; returns its address and inbound channels.
async fn serve() -> (String, InboundChannels) {
    let exchange = Exchange {
        inbound: InboundChannels::default(),
        runtime: tokio::runtime::Handle::current(),
        transport: ClusterTransport::default(),
    };
    let inbound = exchange.inbound.clone();
    let jobs = DeployedJobs::new("tm".into(), Vec::new(), Some(exchange), std::env::temp_dir());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TaskManagerServiceServer::new(TaskManagerApi {
                jobs,
                inbound: inbound.clone(),
            }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (address, inbound)
}

fn key() -> ChannelKey {
    ChannelKey {
        job_id: "job".into(),
        attempt: 3,
        edge: 0,
        producer: 1,
        consumer: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_control_events_arrive_in_order() {
    let (address, inbound) = serve().await;
    let (tx, mut rx) = mpsc::channel(4);
    inbound.register(key(), tx);
    let mut sender = RemoteSender::connect(
        (&tokio::runtime::Handle::current(), &ClusterTransport::default()),
        &address,
        key(),
        NETWORK_CREDITS,
    )
    .unwrap();
    let producer = tokio::spawn(async move {
        for i in 0..100 {
            sender
                .send(&StreamEvent::Data(batch(i * 1000, 1000)), &WAITED)
                .await
                .unwrap();
            sender.send(&StreamEvent::Watermark(i), &WAITED).await.unwrap();
        }
        sender.send(&StreamEvent::EndOfStream, &WAITED).await.unwrap();
    });
    for i in 0..100 {
        match rx.recv().await.unwrap() {
            StreamEvent::Data(b) => assert_eq!(b, batch(i * 1000, 1000)),
            other => panic!("expected batch {i}, got {other:?}"),
        }
        assert!(matches!(rx.recv().await.unwrap(), StreamEvent::Watermark(w) if w == i));
    }
    assert!(matches!(rx.recv().await.unwrap(), StreamEvent::EndOfStream));
    producer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_stops_the_producer() {
    let (address, inbound) = serve().await;
    let capacity = 2;
    let (tx, mut rx) = mpsc::channel(capacity);
    inbound.register(key(), tx);
    let mut sender = RemoteSender::connect(
        (&tokio::runtime::Handle::current(), &ClusterTransport::default()),
        &address,
        key(),
        NETWORK_CREDITS,
    )
    .unwrap();
    let (sent_tx, mut sent) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for i in 0..1000 {
            sender.send(&StreamEvent::Data(batch(i, 1024)), &WAITED).await.unwrap();
            sent_tx.send(i).unwrap();
        }
    });
    // Nobody reads: the producer gets as far as the credits and the input channel allow.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut count = 0;
    while sent.try_recv().is_ok() {
        count += 1;
    }
    let bound = NETWORK_CREDITS + capacity + 1;
    assert!(count > 0, "nothing was sent");
    assert!(
        count <= bound,
        "{count} batches left the producer; at most {bound} may be in flight"
    );
    // Reading lets it continue.
    for i in 0..200 {
        match rx.recv().await.unwrap() {
            StreamEvent::Data(b) => assert_eq!(b, batch(i, 1024)),
            other => panic!("{other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut more = 0;
    while sent.try_recv().is_ok() {
        more += 1;
    }
    assert!(count + more >= 200, "the producer did not resume: {count} + {more}");
}
