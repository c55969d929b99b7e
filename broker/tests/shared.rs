//! `$share` groups work for both protocol versions: members split the
//! messages, none twice, none lost.

mod common;

use std::collections::BTreeSet;

use common::*;

async fn three_members_split_a_topic(version: &str) {
    let broker = start(test_config()).await;
    let addr = broker.local_addr();
    let mut members = Vec::new();
    for member in 0..3 {
        let id = format!("member-{version}-{member}");
        members.push(MosquittoSub::start(addr, version, &id, "$share/g/shared/t").await);
    }
    let sent: Vec<String> = (0..30).map(|i| format!("m-{i}")).collect();

    mosquitto_pub(addr, version, "shared/t", &sent).await;

    let mut per_member = [Vec::new(), Vec::new(), Vec::new()];
    let [a, b, c] = &mut members[..] else {
        unreachable!("three members")
    };
    for _ in 0..sent.len() {
        let (index, line) = tokio::select! {
            line = a.next_payload() => (0, line),
            line = b.next_payload() => (1, line),
            line = c.next_payload() => (2, line),
        };
        per_member[index].push(line);
    }
    let received: Vec<&String> = per_member.iter().flatten().collect();
    let unique: BTreeSet<&String> = received.iter().copied().collect();
    let all: BTreeSet<&String> = sent.iter().collect();
    assert_eq!(unique.len(), received.len(), "no message delivered twice");
    assert_eq!(unique, all, "every message delivered");
    for (member, got) in per_member.iter().enumerate() {
        assert!(!got.is_empty(), "member {member} received a share");
    }
    for member in members {
        member.stop().await;
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn shared_subscription_splits_messages_among_three_v311_members() {
    three_members_split_a_topic("mqttv311").await;
}

#[tokio::test]
async fn shared_subscription_splits_messages_among_three_v5_members() {
    three_members_split_a_topic("mqttv5").await;
}
