//! Faults set on the simulator reach the client as the right error, and the client refuses to
//! reuse a connection after a timeout or a transport error.

mod sim_support;

use std::time::Duration;

use sim_support::{exact, start, with_loads, BOUND};
use tokio::time::timeout;
use wattchain::modbus::ModbusError;
use wattchain::sim::server::MAX_CONNECTIONS;
use wattchain::sim::Fault;

#[tokio::test]
async fn exception_fault_is_reported_and_clearing_it_restores_readings() {
    let running = start(exact(with_loads(&[1], 1))).await;
    let mut cabinet = running.connect().await;
    running.sim.set_fault(Fault::Exception(6));

    let err = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect_err("busy");
    assert!(
        matches!(
            err,
            ModbusError::Exception {
                function: 4,
                code: 6
            }
        ),
        "{err}"
    );
    assert!(!err.needs_reconnect() && !cabinet.is_broken());
    let err = timeout(BOUND, cabinet.set_load(2, true))
        .await
        .expect("bound")
        .expect_err("busy");
    assert!(
        matches!(
            err,
            ModbusError::Exception {
                function: 5,
                code: 6
            }
        ),
        "{err}"
    );
    assert!(
        !running.sim.switches().loads[1],
        "a refused write must not switch"
    );

    running.sim.set_fault(Fault::None);
    let m = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect("healthy again");
    assert!((m.pa - running.sim.expected().pa).abs() < 1e-2);
    running.stop().await;
}

#[tokio::test]
async fn stall_fault_times_out_and_the_connection_is_then_refused() {
    let running = start(exact(with_loads(&[1], 1))).await;
    let request_timeout = Duration::from_millis(200);
    let mut cabinet = running
        .connect_with(running.sim.map().clone(), request_timeout)
        .await;
    running.sim.set_fault(Fault::Stall);

    let err = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("client timeout fires first")
        .expect_err("stalled");
    assert!(
        matches!(err, ModbusError::Timeout { after, .. } if after == request_timeout),
        "{err}"
    );
    assert!(err.needs_reconnect() && cabinet.is_broken());

    // Even with the server healthy again, the old connection is not trusted.
    running.sim.set_fault(Fault::None);
    let err = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect_err("broken");
    assert!(matches!(err, ModbusError::Broken), "{err}");

    let mut fresh = running
        .connect_with(running.sim.map().clone(), request_timeout)
        .await;
    timeout(BOUND, fresh.read_measurement())
        .await
        .expect("bound")
        .expect("reconnected reads work");
    running.stop().await;
}

#[tokio::test]
async fn close_fault_drops_the_connection_as_a_transport_error() {
    let running = start(exact(with_loads(&[1], 1))).await;
    let mut cabinet = running.connect().await;
    running.sim.set_fault(Fault::Close);

    let err = timeout(BOUND, cabinet.read_switches())
        .await
        .expect("bound")
        .expect_err("closed");
    assert!(matches!(err, ModbusError::Transport { .. }), "{err}");
    assert!(err.needs_reconnect() && cabinet.is_broken());

    running.sim.set_fault(Fault::None);
    let mut fresh = running.connect().await;
    let s = timeout(BOUND, fresh.read_switches())
        .await
        .expect("bound")
        .expect("reconnected");
    assert_eq!(s, with_loads(&[1], 1));
    running.stop().await;
}

#[tokio::test]
async fn shutdown_closes_open_client_connections() {
    let running = start(exact(with_loads(&[], 1))).await;
    let mut cabinet = running.connect().await;
    timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect("read");
    running.stop().await;
    let err = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect_err("server gone");
    assert!(err.needs_reconnect(), "{err}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_a_freed_slot_is_reusable() {
    let running = start(exact(with_loads(&[], 1))).await;
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let mut c = running.connect().await;
        // A completed request proves the server accepted and serves this connection.
        timeout(BOUND, c.read_switches())
            .await
            .expect("bound")
            .expect("within limit");
        held.push(c);
    }
    let mut extra = running.connect().await;
    let err = timeout(BOUND, extra.read_switches())
        .await
        .expect("bound")
        .expect_err("over limit");
    assert!(err.needs_reconnect(), "{err}");

    // Closing one connection frees its slot once the server notices the close.
    drop(held.pop());
    let reconnected = timeout(BOUND, async {
        loop {
            let mut c = running.connect().await;
            if c.read_switches().await.is_ok() {
                break c;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(reconnected.is_ok(), "slot was never freed");
    running.stop().await;
}
