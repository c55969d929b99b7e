//! Maps other than the default work end to end: the PFC200 example (holding registers,
//! scaled int32, low word first) parses, is served by the simulator and decodes correctly.

mod sim_support;

use std::path::Path;

use sim_support::{assert_close, start, with_loads, BOUND};
use tokio::time::timeout;
use tokio_modbus::client::Reader;
use tokio_modbus::ExceptionCode;
use wattchain::regmap::{Quantity, RegisterMap, Table, ValueType, WordOrder};
use wattchain::sim::SimConfig;

fn pfc200() -> RegisterMap {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("maps/pfc200-example.toml");
    RegisterMap::from_file(&path).expect("the shipped example map is valid")
}

#[test]
fn pfc200_example_map_describes_scaled_int32_low_word_first_holding_registers() {
    let map = pfc200();
    assert_eq!(map.table(), Table::Holding);
    assert_eq!(map.word_order(), WordOrder::LowFirst);
    for (_, reg) in map.entries() {
        assert_eq!(reg.value_type, ValueType::I32);
        assert_eq!(reg.scale, 0.001);
    }
    assert_eq!(map.register(Quantity::U).address, 12288);
    assert_eq!(
        map.read_plan().len(),
        1,
        "the four are contiguous: one read"
    );
}

#[test]
fn a_missing_map_file_names_the_path() {
    let err = RegisterMap::from_file(Path::new("/nonexistent/map.toml")).expect_err("no file");
    assert!(err.to_string().contains("/nonexistent/map.toml"), "{err}");
}

#[tokio::test]
async fn simulator_serves_the_pfc200_layout_and_the_client_decodes_it() {
    let config = SimConfig {
        map: pfc200(),
        seed: Some(5),
        noise: false,
        churn: None,
        initial: with_loads(&[4, 7], 2),
    };
    let running = start(config).await;
    let expected = running.sim.expected();

    let mut cabinet = running.connect().await;
    let m = timeout(BOUND, cabinet.read_measurement())
        .await
        .expect("bound")
        .expect("read");
    // mV/mA/mW resolution.
    assert_close("U", m.u, expected.u, 0.0005);
    assert_close("I", m.i, expected.i, 0.0005);
    assert_close("PA", m.pa, expected.pa, 0.0005);
    assert_close("PR", m.pr, expected.pr, 0.0005);
    let s = timeout(BOUND, cabinet.read_switches())
        .await
        .expect("bound")
        .expect("coils at 512..519");
    assert_eq!(s, with_loads(&[4, 7], 2));

    // On the wire, U = 236 V = 236000 mV = 0x0003_99E0 sits low word first.
    let mut ctx = running.raw().await;
    let words = timeout(BOUND, ctx.read_holding_registers(12288, 2))
        .await
        .expect("bound")
        .expect("transport")
        .expect("mapped");
    assert_eq!(words, vec![0x99E0, 0x0003]);
    let input = timeout(BOUND, ctx.read_input_registers(12288, 2))
        .await
        .expect("bound")
        .expect("transport");
    assert_eq!(
        input,
        Err(ExceptionCode::IllegalFunction),
        "this map has no input table"
    );
    running.stop().await;
}
