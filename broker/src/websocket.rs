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
use ws_stream_tungstenite::WsStream;

use crate::front_door::FrontDoor;

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
    /// Upgrades `stream` to WebSocket and reads CONNECT, both within the connect timeout.
    pub(crate) async fn serve_ws(&self, stream: TcpStream, peer: SocketAddr) {
        // A frame may carry a whole packet plus the frame header.
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_packet_size + 16))
            .max_frame_size(Some(self.config.max_packet_size + 16));
        let upgrade = async {
            let ws = accept_hdr_async_with_config(stream, choose_subprotocol, Some(ws_config))
                .await
                .map_err(std::io::Error::other)?;
            Ok(WsStream::new(ws))
        };
        self.upgrade_then_admit(peer, "WebSocket", upgrade).await;
    }
}
