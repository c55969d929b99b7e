//! "Afterwards both protocol versions still serve": fresh clients of each version exchange a
//! message each way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::*;

static PROBES: AtomicUsize = AtomicUsize::new(0);

/// With `users`, the probe logs in as the `watcher` and `publisher` roles.
pub async fn serves_both(addr: SocketAddr, users: bool) {
    let n = PROBES.fetch_add(1, Ordering::Relaxed);
    for (sub_version, pub_version) in [(4, 5), (5, 4)] {
        let topic = format!("wattchain/ledger/probe-{n}-v{sub_version}");
        let mut sub = Connect::new(sub_version, &format!("probe-sub-{n}-{sub_version}"));
        let mut publisher = Connect::new(pub_version, &format!("probe-pub-{n}-{pub_version}"));
        if users {
            sub.login = Some(("watcher".into(), "watcher-secret".into()));
            publisher.login = Some(("publisher".into(), "publisher-secret".into()));
        }
        let (mut sub, _) = Raw::open(addr, &sub).await;
        sub.subscribe(&topic, 1).await;
        let (mut publisher, _) = Raw::open(addr, &publisher).await;
        publisher.publish1(&topic, b"alive").await;
        let got = sub.next().await;
        assert_eq!(
            (got.topic.as_str(), got.payload.as_slice()),
            (topic.as_str(), &b"alive"[..]),
            "v{pub_version} publisher reaches v{sub_version} subscriber"
        );
        sub.disconnect().await;
        publisher.disconnect().await;
    }
}

/// True when an anonymous CONNECT of `version` on plain TCP `addr` does not open a session:
/// refused with a CONNACK code, closed, or not answered as MQTT at all.
pub async fn anonymous_refused(addr: SocketAddr, version: u8) -> bool {
    use tokio::io::AsyncReadExt;
    let connect = Connect::new(version, &format!("census-{}-v{version}", addr.port())).encode();
    let mut stream = raw_send(addr, &connect).await;
    let mut head = [0u8; 4];
    match tokio::time::timeout(WAIT, stream.read_exact(&mut head)).await {
        // CONNACK: 0x20, length, flags, code.
        Ok(Ok(_)) if head[0] == 0x20 => head[3] != 0,
        _ => true,
    }
}
