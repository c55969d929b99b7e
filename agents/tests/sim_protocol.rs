//! The simulator speaks Modbus like the PLC: coils switch loads, readings follow, and
//! requests outside the map get the right exception.

mod sim_support;

use std::time::Duration;

use sim_support::{exact, start, with_loads, BOUND, REQUEST_TIMEOUT};
use tokio::time::timeout;
use tokio_modbus::client::{Reader, Writer};
use tokio_modbus::ExceptionCode;
use wattchain::modbus::ModbusError;
use wattchain::regmap::{RegisterMap, Switches};
use wattchain::sim::SimConfig;

#[tokio::test]
async fn switching_resistive_loads_on_over_modbus_raises_current_and_active_power() {
    // Noise on: the steps (≥ 200 W) dwarf the 0.5 % noise.
    let config = SimConfig {
        seed: Some(3),
        ..SimConfig::new(RegisterMap::default_sim())
    };
    let running = start(config).await;
    let mut cabinet = running.connect().await;

    let idle = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect("read");
    timeout(BOUND, cabinet.set_load(1, true))
        .await
        .expect("bound")
        .expect("switch load 1");
    let one = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect("read");
    timeout(BOUND, cabinet.set_load(3, true))
        .await
        .expect("bound")
        .expect("switch load 3");
    let two = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect("read");

    assert!(
        one.i > idle.i && two.i > one.i,
        "I: {} → {} → {}",
        idle.i,
        one.i,
        two.i
    );
    assert!(
        one.pa > idle.pa + 150.0 && two.pa > one.pa + 450.0,
        "PA: {} → {} → {}",
        idle.pa,
        one.pa,
        two.pa
    );

    let switches = timeout(BOUND, cabinet.read_switches())
        .await
        .expect("bound")
        .expect("coils");
    assert_eq!(switches, with_loads(&[1, 3], 1));
    assert_eq!(running.sim.switches(), switches);
    running.stop().await;
}

#[tokio::test]
async fn selecting_source_2_lowers_the_voltage_and_reads_back_on_the_coil() {
    let running = start(exact(with_loads(&[2], 1))).await;
    let mut cabinet = running.connect().await;
    timeout(BOUND, cabinet.set_source(2))
        .await
        .expect("bound")
        .expect("select source");
    let m = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect("read");
    assert!((m.u - 236.0).abs() < 1e-3, "U on source 2: {}", m.u);
    let s = timeout(BOUND, cabinet.read_switches())
        .await
        .expect("bound")
        .expect("coils");
    assert_eq!(s.source, 2);
    timeout(BOUND, cabinet.set_source(1))
        .await
        .expect("bound")
        .expect("select source");
    assert_eq!(running.sim.switches().source, 1);
    running.stop().await;
}

#[tokio::test]
async fn switching_a_load_the_cabinet_does_not_have_is_refused_without_io() {
    let running = start(exact(Switches::default())).await;
    let mut cabinet = running.connect().await;
    let err = cabinet.set_load(8, true).await.expect_err("no load 8");
    assert!(
        matches!(err, ModbusError::Switch(_)) && !err.needs_reconnect(),
        "{err}"
    );
    let err = cabinet
        .set_load(0, true)
        .await
        .expect_err("loads start at 1");
    assert!(err.to_string().contains("1..=7"), "{err}");
    let err = cabinet.set_source(3).await.expect_err("no source 3");
    assert!(matches!(err, ModbusError::Switch(_)), "{err}");
    running.stop().await;
}

#[tokio::test]
async fn write_multiple_coils_switches_several_loads_at_once() {
    let running = start(exact(Switches::default())).await;
    let mut ctx = running.raw().await;
    timeout(BOUND, ctx.write_multiple_coils(1, &[true, false, true]))
        .await
        .expect("bound")
        .expect("transport")
        .expect("no exception");
    assert_eq!(running.sim.switches(), with_loads(&[2, 4], 1));
    let coils = timeout(BOUND, ctx.read_coils(0, 8))
        .await
        .expect("bound")
        .expect("transport")
        .expect("no exception");
    assert_eq!(
        coils,
        vec![false, true, false, true, false, false, false, false]
    );
    running.stop().await;
}

#[tokio::test]
async fn unmapped_addresses_answer_illegal_data_address() {
    let running = start(exact(Switches::default())).await;
    let mut ctx = running.raw().await;
    let illegal = Some(ExceptionCode::IllegalDataAddress);

    let past_end = timeout(BOUND, ctx.read_input_registers(8, 1))
        .await
        .expect("bound")
        .expect("transport");
    assert_eq!(past_end.err(), illegal);
    let straddling = timeout(BOUND, ctx.read_input_registers(6, 4))
        .await
        .expect("bound")
        .expect("transport");
    assert_eq!(straddling.err(), illegal);
    let coil = timeout(BOUND, ctx.read_coils(0, 9))
        .await
        .expect("bound")
        .expect("transport");
    assert_eq!(coil.err(), illegal);
    let write = timeout(BOUND, ctx.write_single_coil(8, true))
        .await
        .expect("bound")
        .expect("transport");
    assert_eq!(write.err(), illegal);
    // A multi-coil write touching an unmapped coil changes nothing.
    let partial = timeout(BOUND, ctx.write_multiple_coils(6, &[true, true, true]))
        .await
        .expect("bound")
        .expect("transport");
    assert_eq!(partial.err(), illegal);
    assert_eq!(running.sim.switches(), Switches::default());
    running.stop().await;
}

#[tokio::test]
async fn unsupported_functions_answer_illegal_function() {
    let running = start(exact(Switches::default())).await;
    let mut ctx = running.raw().await;
    let illegal = Some(ExceptionCode::IllegalFunction);

    let discrete = timeout(BOUND, ctx.read_discrete_inputs(0, 1))
        .await
        .expect("bound")
        .expect("transport");
    assert_eq!(discrete.err(), illegal);
    // The default map uses input registers: there is no holding table to read or write.
    let holding = timeout(BOUND, ctx.read_holding_registers(0, 2))
        .await
        .expect("bound")
        .expect("transport");
    assert_eq!(holding.err(), illegal);
    let write = timeout(BOUND, ctx.write_single_register(0, 1))
        .await
        .expect("bound")
        .expect("transport");
    assert_eq!(write.err(), illegal);
    running.stop().await;
}

#[tokio::test]
async fn client_reports_an_exception_and_keeps_the_connection_usable() {
    let running = start(exact(with_loads(&[5], 1))).await;
    // The client believes U lives at 100, which the simulator does not map.
    let text = RegisterMap::default_sim_toml().replace("address = 0\n", "address = 100\n");
    let wrong = RegisterMap::from_toml_str(&text).expect("valid map");
    let mut cabinet = running.connect_with(wrong, REQUEST_TIMEOUT).await;
    let err = cabinet
        .read_measurement()
        .await
        .expect_err("U@100 is unmapped");
    assert!(
        matches!(
            err,
            ModbusError::Exception {
                function: 4,
                code: 2
            }
        ),
        "{err}"
    );
    assert!(!err.needs_reconnect());
    let s = timeout(BOUND, cabinet.read_switches())
        .await
        .expect("bound")
        .expect("same connection still works");
    assert_eq!(s, with_loads(&[5], 1));
    running.stop().await;
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_a_connect_error() {
    // Bind then drop, so the port is (almost certainly) closed.
    let addr = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr")
    };
    let result = wattchain::modbus::ModbusCabinet::connect(
        addr,
        RegisterMap::default_sim(),
        Duration::from_secs(2),
    )
    .await;
    let err = result.expect_err("nothing listens");
    assert!(
        matches!(err, ModbusError::Connect { .. }) && err.needs_reconnect(),
        "{err}"
    );
}
