//! The optional WebSocket listener: MQTT over WebSocket (binary frames, subprotocol `mqtt`), as
//! browser dashboards and some IoT tools speak it.
//!
//! The HTTP upgrade runs under the same handshake timeout as CONNECT (rumqttd runs its own
//! WebSocket handshakes inline in its accept loop without one: a single idle socket freezes
//! that listener). Once upgraded, the byte stream goes through the same guards as the plain
//! port.

use std::net::SocketAddr;

use async_tungstenite::tokio::{accept_hdr_async_with_config, TokioAdapter};
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio::net::TcpStream;
use tracing::info;
use ws_stream_tungstenite::WsStream;

use crate::front_door::{read_packet, FrontDoor};

/// An upgraded connection, read and written as a byte stream.
pub(crate) type WsConnection = WsStream<TokioAdapter<TcpStream>>;

/// Answers the `mqtt` subprotocol when the client offers it (MQTT 5.0 §6 requires clients to
/// offer it; answering it is what browsers' MQTT libraries check).
// The signature is tungstenite's `Callback`; its error type is not ours to shrink.
#[allow(clippy::result_large_err)]
fn choose_subprotocol(
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    let offers_mqtt = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
    if offers_mqtt {
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    }
    Ok(response)
}

impl FrontDoor {
    /// Upgrades `stream` to WebSocket and reads CONNECT, all within the handshake timeout.
    pub(crate) async fn serve_ws(&self, stream: TcpStream, peer: SocketAddr) {
        let timeout = self.config.connect_timeout;
        // A frame may carry a whole packet plus the frame header.
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_packet_size + 16))
            .max_frame_size(Some(self.config.max_packet_size + 16));
        let handshake = tokio::time::timeout(timeout, async {
            let ws = accept_hdr_async_with_config(stream, choose_subprotocol, Some(ws_config))
                .await
                .map_err(std::io::Error::other)?;
            let mut stream = WsStream::new(ws);
            let first = read_packet(&mut stream, 0x10, self.config.max_packet_size).await;
            Ok::<_, std::io::Error>((stream, first))
        });
        let shaken = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            shaken = handshake => shaken,
        };
        match shaken {
            Err(_) => info!(%peer, ?timeout, "closing WebSocket connection: no CONNECT in time"),
            Ok(Err(err)) => {
                info!(%peer, cause = %err, "closing connection: WebSocket handshake failed")
            }
            Ok(Ok((stream, first))) => self.admit(stream, peer, first).await,
        }
    }
}
