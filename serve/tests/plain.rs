//! Plain HTTP serving and graceful shutdown.

mod common;

use common::*;
use gantry_serve::{serve, ServeOptions};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn plain_http_through_serve() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app(Gate::new()), None, async move {
        let _ = stopped.await;
    }));

    let reply = get_plain(addr, "/").await.unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "hello"));
    let reply = get_plain(addr, "/peer").await.unwrap();
    assert!(reply.body.starts_with("127.0.0.1:"), "ConnectInfo: {}", reply.body);
    assert_eq!(get_plain(addr, "/nowhere").await.unwrap().status, 404);

    stop.send(()).unwrap();
    tokio::time::timeout(LIMIT, task).await.unwrap().unwrap().unwrap();
    wait_refused(addr).await;
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let gate = Gate::new();
    let mut server = start(app(gate.clone()), None, ServeOptions::default()).await;
    let addr = server.addr;
    let slow = tokio::spawn(async move { get_plain(addr, "/slow").await });
    gate.wait_entered().await;

    server.stop();
    wait_refused(addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.task.is_finished(), "serve returned with a request in flight");
    gate.release();
    let reply = tokio::time::timeout(LIMIT, slow).await.unwrap().unwrap().unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "slow done"));
    server.stop_and_join(LIMIT).await.unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_does_not_delay_shutdown() {
    let mut server = start(app(Gate::new()), None, ServeOptions::default()).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    let conn = tokio::spawn(conn);
    assert_eq!(request1(&mut sender, server.addr, "/").await.unwrap().0, 200);

    // The connection stays open and idle; shutdown closes it at once, well before the 20 s grace.
    let started = Instant::now();
    server.stop();
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("shutdown waited on an idle connection")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::timeout(LIMIT, conn).await.expect("client connection not closed").unwrap().unwrap();
}

#[tokio::test]
async fn the_shutdown_wait_is_bounded() {
    let gate = Gate::new();
    let options = ServeOptions { shutdown_timeout: Duration::from_millis(300), ..ServeOptions::default() };
    let server = start(app(gate.clone()), None, options).await;
    let addr = server.addr;
    let stuck = tokio::spawn(async move { get_plain(addr, "/slow").await });
    gate.wait_entered().await;

    // The handler never finishes: serve gives up on it after shutdown_timeout.
    let started = Instant::now();
    server.stop_and_join(Duration::from_secs(5)).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
    let reply = tokio::time::timeout(LIMIT, stuck).await.unwrap().unwrap();
    assert!(reply.is_err(), "the stuck request was answered");
}
