//! MQTT over WebSocket: a WebSocket client exchanges messages with a plain-TCP client through
//! the same broker, and an idle socket on the WebSocket port cannot freeze it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wattchain_broker::{BrokerConfig, WsConfig};
use ws_stream_tungstenite::WsStream;

fn ws_config(connect_timeout: Duration) -> BrokerConfig {
    BrokerConfig {
        ws: Some(WsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }),
        connect_timeout,
        ..test_config()
    }
}

/// A WebSocket MQTT connection as a byte stream, and the subprotocol the server chose.
async fn ws_connect(
    addr: SocketAddr,
) -> (
    WsStream<async_tungstenite::tokio::TokioAdapter<TcpStream>>,
    Option<String>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (ws, response) = timeout(WAIT, async_tungstenite::tokio::client_async(request, tcp))
        .await
        .expect("upgrade in time")
        .expect("upgrade accepted");
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (WsStream::new(ws), protocol)
}

#[tokio::test]
async fn a_websocket_client_exchanges_messages_with_a_tcp_client() {
    let broker = start(ws_config(Duration::from_secs(10))).await;
    let ws_addr = broker.ws_local_addr().expect("ws listener configured");
    let mut watcher = TestClient::v4(broker.local_addr(), "tcp-watcher").await;
    watcher.subscribe("from/ws").await;

    let (mut ws, protocol) = ws_connect(ws_addr).await;
    assert_eq!(
        protocol.as_deref(),
        Some("mqtt"),
        "the mqtt subprotocol is answered"
    );
    ws.write_all(&connect_packet(4, "ws/client#1", None))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    timeout(WAIT, ws.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "accepted");
    ws.write_all(&publish_packet_v4("from/ws", b"hello over websocket"))
        .await
        .unwrap();
    ws.flush().await.unwrap();
    let (topic, payload) = watcher.next_publish().await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("from/ws", &b"hello over websocket"[..])
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn an_idle_socket_on_the_websocket_port_is_closed_and_does_not_block_others() {
    let broker = start(ws_config(Duration::from_millis(300))).await;
    let ws_addr = broker.ws_local_addr().unwrap();
    // Never sends the HTTP upgrade: it must be cut at the connect timeout.
    let mut idle = TcpStream::connect(ws_addr).await.unwrap();

    let (mut ws, _) = ws_connect(ws_addr).await;
    ws.write_all(&connect_packet(5, "beside-idle", None))
        .await
        .unwrap();
    let mut head = [0u8; 2];
    timeout(WAIT, ws.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[0], 0x20, "a v5 CONNACK while the idle socket hangs");

    let mut rest = Vec::new();
    let closed = timeout(WAIT, idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle socket is closed after the handshake timeout"
    );
    broker.shutdown().await;
}
