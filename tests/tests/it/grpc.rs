//! gRPC through the gateway to an HTTP/2 upstream (`scheme: "grpc"`): a real tonic server and client, unary
//! and server-streaming calls, and statuses carried in trailers (after data) and trailers-only answers.
//!
//! The messages are declared with prost derives, and the service is wired by hand the way tonic's generated
//! code does it, so the tests need no `protoc`.
#![allow(
    clippy::result_large_err,
    reason = "tonic::Status is the error type tonic's service traits require"
)]

use futures_util::Stream;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use support::*;
use tonic::body::Body as BoxBody;
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(uint32, tag = "2")]
    count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    message: String,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

fn failure() -> Status {
    let mut st = Status::invalid_argument("told to fail");
    st.metadata_mut()
        .insert("x-detail", "from-the-upstream".parse().unwrap());
    st
}

struct Unary;
impl UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = BoxFuture<Result<Response<EchoReply>, Status>>;
    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let r = req.into_inner();
            if r.message == "fail" {
                return Err(failure());
            }
            Ok(Response::new(EchoReply { message: r.message }))
        })
    }
}

/// Sends `count` replies; with message `fail-late` the stream then ends in an error status (a trailer).
struct Streamed;

impl ServerStreamingService<EchoRequest> for Streamed {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Result<Response<ReplyStream>, Status>>;
    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let r = req.into_inner();
            let mut items: Vec<Result<EchoReply, Status>> = (0..r.count)
                .map(|i| {
                    Ok(EchoReply {
                        message: format!("{} #{i}", r.message),
                    })
                })
                .collect();
            if r.message == "fail-late" {
                items.push(Err(failure()));
            }
            Ok(Response::new(
                Box::pin(futures_util::stream::iter(items)) as ReplyStream
            ))
        })
    }
}

#[derive(Clone)]
struct Echo;
impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}
impl tower_service::Service<http::Request<BoxBody>> for Echo {
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            Ok(match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(Unary, req).await,
                "/test.Echo/Stream" => grpc.server_streaming(Streamed, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

async fn grpc_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Echo)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

async fn fixture() -> (Gateway, tonic::client::Grpc<tonic::transport::Channel>) {
    let upstream = grpc_server().await;
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "grpc",
        json!({"uri": "/test.Echo/*", "upstream": {"scheme": "grpc", "type": "roundrobin",
               "nodes": {upstream.to_string(): 1}}}),
    )
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.http_addr()))
        .unwrap()
        .connect()
        .await
        .expect("h2c to the gateway");
    (gw, tonic::client::Grpc::new(channel))
}

fn codec() -> ProstCodec<EchoRequest, EchoReply> {
    ProstCodec::default()
}

fn request(message: &str, count: u32) -> Request<EchoRequest> {
    Request::new(EchoRequest {
        message: message.into(),
        count,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_and_their_statuses_pass_through() {
    let (_gw, mut client) = fixture().await;
    let unary = http::uri::PathAndQuery::from_static("/test.Echo/Unary");
    client.ready().await.unwrap();
    let ok = client
        .unary(request("hello", 0), unary.clone(), codec())
        .await
        .expect("unary call through the gateway");
    assert_eq!(ok.into_inner().message, "hello");

    client.ready().await.unwrap();
    let err = client
        .unary(request("fail", 0), unary, codec())
        .await
        .expect_err("the upstream's error status");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "told to fail");
    assert_eq!(err.metadata().get("x-detail").unwrap(), "from-the-upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_keeps_messages_and_trailers() {
    let (_gw, mut client) = fixture().await;
    let stream_path = http::uri::PathAndQuery::from_static("/test.Echo/Stream");
    client.ready().await.unwrap();
    let mut stream = client
        .server_streaming(request("tick", 5), stream_path.clone(), codec())
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.expect("no error status") {
        got.push(m.message);
    }
    assert_eq!(
        got,
        (0..5).map(|i| format!("tick #{i}")).collect::<Vec<_>>()
    );
    let trailers = stream.trailers().await.unwrap().expect("trailers arrived");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");

    // An error after data travels in the trailers.
    client.ready().await.unwrap();
    let mut stream = client
        .server_streaming(request("fail-late", 3), stream_path, codec())
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        assert_eq!(
            stream.message().await.unwrap().unwrap().message,
            format!("fail-late #{i}")
        );
    }
    let err = stream.message().await.expect_err("the trailing status");
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "told to fail")
    );
    assert_eq!(err.metadata().get("x-detail").unwrap(), "from-the-upstream");
}
