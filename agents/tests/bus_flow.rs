//! An agent that publishes while messages keep arriving must never deadlock with its own MQTT
//! session: the session keeps driving the connection while the agent is busy, holding what
//! arrives meanwhile (bounded), and hands it over in order once the agent reads again.

mod support;

use rumqttc::QoS;
use support::*;
use wattchain::bus::{Bus, BusOptions};

const MESSAGES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_publishing_while_its_inbox_is_full_does_not_deadlock_its_session() {
    for (name, broker) in [
        ("mosquitto", TestBroker::mosquitto().await),
        ("embedded", TestBroker::embedded().await),
    ] {
        let url = broker.url();
        // A tiny queue both ways: the inbox fills at once, and so does the outgoing queue.
        let mut options = BusOptions::new(url.clone(), "busy-agent", "test");
        options.queue = 4;
        let mut agent = Bus::connect(options, vec![("flow/in".into(), QoS::AtLeastOnce)]).unwrap();
        agent.wait_ready(WAIT).await.expect("agent subscribed");
        let watcher_options = BusOptions::new(url.clone(), "flow-watcher", "test");
        let mut watcher =
            Bus::connect(watcher_options, vec![("flow/out".into(), QoS::AtLeastOnce)]).unwrap();
        watcher.wait_ready(WAIT).await.expect("watcher subscribed");
        let feeder =
            Bus::connect(BusOptions::new(url.clone(), "flow-feeder", "test"), vec![]).unwrap();
        feeder.wait_ready(WAIT).await.expect("feeder connected");

        // The inbox overflows while the agent is busy publishing and not reading.
        let feed = feeder.outlet();
        let feeding = tokio::spawn(async move {
            for n in 0..MESSAGES {
                feed.publish("flow/in", n.to_string(), QoS::AtLeastOnce, false)
                    .await
                    .unwrap();
            }
        });
        let out = agent.outlet();
        tokio::time::timeout(WAIT, async {
            for n in 0..MESSAGES {
                out.publish("flow/out", n.to_string(), QoS::AtLeastOnce, false)
                    .await
                    .unwrap();
            }
        })
        .await
        .expect("the agent's publishes go out while its inbox is full");
        let mut seen_out = 0;
        tokio::time::timeout(WAIT, async {
            while seen_out < MESSAGES {
                let m = watcher.recv().await.expect("watcher session alive");
                assert_eq!(
                    String::from_utf8_lossy(&m.payload),
                    seen_out.to_string(),
                    "{name}: the watcher sees every publication in order"
                );
                seen_out += 1;
            }
        })
        .await
        .expect("every publication reaches the watcher");
        // Then everything that arrived meanwhile is delivered, in order, none lost.
        tokio::time::timeout(WAIT, async {
            for n in 0..MESSAGES {
                let m = agent.recv().await.expect("agent session alive");
                assert_eq!(m.topic, "flow/in");
                assert_eq!(
                    String::from_utf8_lossy(&m.payload),
                    n.to_string(),
                    "{name}: in order, none lost"
                );
            }
        })
        .await
        .expect("the held messages reach the agent");
        feeding.await.unwrap();
        for bus in [agent, watcher, feeder] {
            bus.close().await;
        }
        broker.stop().await;
    }
}

/// A session told to re-publish its retained state on a trigger message (Home Assistant's
/// birth) does so on the trigger, and never hands that topic to its agent, which does not read
/// it: Home Assistant's `offline`, or a flood, would otherwise fill the agent's inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republish_trigger_resends_retained_state_and_never_reaches_the_agent() {
    let broker = TestBroker::embedded().await;
    let url = broker.url();
    let mut options = BusOptions::new(url.clone(), "announcer", "test");
    options.queue = 4;
    options.republish_on = Some(("ha/status".into(), b"online".to_vec()));
    let mut agent = Bus::connect(options, vec![]).unwrap();
    agent.wait_ready(WAIT).await.expect("agent subscribed");
    agent
        .outlet()
        .publish_retained("ha/sensor/x/config", "{}")
        .unwrap();
    let mut watcher = Bus::connect(
        BusOptions::new(url.clone(), "ha-watcher", "test"),
        vec![("ha/sensor/#".into(), QoS::AtLeastOnce)],
    )
    .unwrap();
    watcher.wait_ready(WAIT).await.expect("watcher subscribed");
    let first = tokio::time::timeout(WAIT, watcher.recv()).await.unwrap();
    assert_eq!(first.unwrap().topic, "ha/sensor/x/config");

    let ha = Bus::connect(BusOptions::new(url.clone(), "ha", "test"), vec![]).unwrap();
    ha.wait_ready(WAIT).await.expect("ha connected");
    // More than the agent's inbox holds, then the trigger.
    for _ in 0..20 {
        ha.outlet()
            .publish("ha/status", "offline", QoS::AtLeastOnce, false)
            .await
            .unwrap();
    }
    ha.outlet()
        .publish("ha/status", "online", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let again = tokio::time::timeout(WAIT, watcher.recv()).await.unwrap();
    assert_eq!(again.unwrap().topic, "ha/sensor/x/config", "sent again");
    assert!(
        tokio::time::timeout(std::time::Duration::ZERO, agent.recv())
            .await
            .is_err(),
        "nothing on the trigger topic reaches the agent"
    );
    for bus in [agent, watcher, ha] {
        bus.close().await;
    }
    broker.stop().await;
}
