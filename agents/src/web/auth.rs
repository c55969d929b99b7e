//! The optional bearer token (`--http-token`): every API request, `/metrics` included, must
//! carry it as `Authorization: Bearer TOKEN`, or as `?access_token=TOKEN` (RFC 6750 §2.3) where a
//! header cannot be set (a browser's `EventSource`). The dashboard's files and the OpenAPI
//! document hold no data and stay open, so a browser can load the page and then ask for the token.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use super::WebState;

/// Paths served without the token.
fn is_public(path: &str) -> bool {
    super::assets::is_asset(path) || path == super::api::OPENAPI_PATH
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(request: &Request<Body>) -> Option<String> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    header.or_else(|| {
        request.uri().query().and_then(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "access_token")
                .map(|(_, v)| percent_decode(v))
        })
    })
}

/// Decodes `%XX` escapes and `+` in a query value.
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Middleware: refuses requests without the configured token (401 with `WWW-Authenticate`).
pub async fn require_token(
    State(state): State<WebState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let Some(token) = state.config.token.as_deref() else {
        return next.run(request).await;
    };
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    match presented(&request) {
        Some(t) if same(t.as_bytes(), token.as_bytes()) => next.run(request).await,
        given => {
            let detail = if given.is_some() {
                "the bearer token is not the one this server was started with"
            } else {
                "this server requires a bearer token: Authorization: Bearer TOKEN (or ?access_token=TOKEN)"
            };
            let mut r =
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"wattchain\""),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb+c%3d"), "a+b c=");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn comparison_needs_every_byte() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secrets"));
    }
}
