//! Unit tests of the register map: parsing, validation, read plans and codec round trips.

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::*;

fn map_with(value_type: &str, order: &str, scale: f64, addresses: [u16; 4]) -> RegisterMap {
    let [u, i, pa, pr] = addresses;
    let text = format!(
        r#"
        [coils]
        loads = [0, 1, 2, 3, 4, 5, 6]
        source = 7
        [measurements]
        table = "holding"
        word_order = "{order}"
        U = {{ address = {u}, type = "{value_type}", scale = {scale:?} }}
        I = {{ address = {i}, type = "{value_type}", scale = {scale:?} }}
        PA = {{ address = {pa}, type = "{value_type}", scale = {scale:?} }}
        PR = {{ address = {pr}, type = "{value_type}", scale = {scale:?} }}
        "#
    );
    RegisterMap::from_toml_str(&text).expect("test map is valid")
}

#[test]
fn default_sim_map_reads_all_four_f32_in_one_request_of_eight_input_registers() {
    let map = RegisterMap::default_sim();
    assert_eq!(
        map.read_plan(),
        vec![RegisterRead {
            table: Table::Input,
            address: 0,
            count: 8
        }]
    );
    assert_eq!(map.coil_plan(), vec![(0, 8)]);
    assert_eq!(map.register(Quantity::PR).address, 6);
    assert_eq!(map.word_order(), WordOrder::HighFirst);
}

#[test]
fn every_type_and_word_order_round_trips_through_registers() {
    let mut rng = StdRng::seed_from_u64(7);
    let cases: [(&str, f64, f64, f64); 5] = [
        // (type, scale, min value, max value) chosen so the scaled values fit the type.
        ("f32", 1.0, -1.0e6, 1.0e6),
        ("i16", 0.1, -3000.0, 3000.0),
        ("u16", 0.01, 0.0, 600.0),
        ("i32", 0.001, -2.0e6, 2.0e6),
        ("u32", 0.001, 0.0, 4.0e6),
    ];
    for (value_type, scale, lo, hi) in cases {
        for order in ["high_first", "low_first"] {
            let map = map_with(value_type, order, scale, [10, 20, 30, 40]);
            for _ in 0..200 {
                let m = Measurement {
                    u: rng.random_range(lo..=hi),
                    i: rng.random_range(lo..=hi),
                    pa: rng.random_range(lo..=hi),
                    pr: rng.random_range(lo..=hi),
                };
                let image = map.encode(&m).expect("value fits");
                let back = map.decode(&image).expect("decodes");
                // Integers lose at most half a scale step; f32 about 1e-7 relative.
                let tol = |v: f64| {
                    if value_type == "f32" {
                        v.abs() * 1e-6
                    } else {
                        scale * 0.5 + 1e-9
                    }
                };
                for (a, b) in [
                    (m.u, back.u),
                    (m.i, back.i),
                    (m.pa, back.pa),
                    (m.pr, back.pr),
                ] {
                    assert!(
                        (a - b).abs() <= tol(a),
                        "{value_type} {order}: {a} came back as {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn int32_low_word_first_puts_the_low_word_at_the_lower_address() {
    let map = map_with("i32", "low_first", 0.001, [100, 102, 104, 106]);
    // 241.5 V = 241500 mV = 0x0003_AF5C; -16 W = -16000 mW = 0xFFFF_C180.
    let words = [
        0xAF5C, 0x0003, 0x03E8, 0x0000, 0xC180, 0xFFFF, 0x0000, 0x0000,
    ];
    let m = map.decode_slice(100, &words).expect("decodes");
    assert!((m.u - 241.5).abs() < 1e-9, "U = {}", m.u);
    assert!((m.i - 1.0).abs() < 1e-9, "I = {}", m.i);
    assert!((m.pa + 16.0).abs() < 1e-9, "PA = {}", m.pa);
    assert_eq!(m.pr, 0.0);
}

#[test]
fn f32_high_word_first_matches_big_endian_ieee754() {
    let map = RegisterMap::default_sim();
    // 230.0f32 = 0x4366_0000.
    let words = [0x4366, 0x0000, 0, 0, 0, 0, 0, 0];
    assert_eq!(map.decode_slice(0, &words).expect("decodes").u, 230.0);
}

#[test]
fn decode_rejects_nan_and_infinity() {
    let map = RegisterMap::default_sim();
    let nan = f32::NAN.to_bits();
    let inf = f32::INFINITY.to_bits();
    for bits in [nan, inf] {
        let words = [0, 0, (bits >> 16) as u16, bits as u16, 0, 0, 0, 0];
        let err = map
            .decode_slice(0, &words)
            .expect_err("non-finite must be rejected");
        assert!(
            matches!(err, DecodeError::NotFinite { quantity: "I", .. }),
            "{err}"
        );
    }
}

#[test]
fn decode_reports_a_register_missing_from_a_short_reply() {
    let map = RegisterMap::default_sim();
    let err = map
        .decode_slice(0, &[0; 7])
        .expect_err("PR low word missing");
    assert_eq!(
        err,
        DecodeError::Missing {
            quantity: "PR",
            address: 7
        }
    );
}

#[test]
fn encode_refuses_a_value_the_type_cannot_hold() {
    let map = map_with("u16", "high_first", 1.0, [0, 1, 2, 3]);
    let m = Measurement {
        u: 230.0,
        i: 1.0,
        pa: -16.0,
        pr: 0.0,
    };
    assert!(matches!(
        map.encode(&m),
        Err(EncodeError::OutOfRange { quantity: "PA", .. })
    ));
}

#[test]
fn read_plan_splits_non_contiguous_quantities_and_merges_adjacent_ones() {
    let map = map_with("i16", "high_first", 1.0, [0, 1, 10, 11]);
    let plan = map.read_plan();
    assert_eq!(plan.len(), 2);
    assert_eq!((plan[0].address, plan[0].count), (0, 2));
    assert_eq!((plan[1].address, plan[1].count), (10, 2));
}

#[test]
fn overlapping_measurements_are_rejected_with_both_names() {
    let text = RegisterMap::default_sim_toml().replace("address = 2\n", "address = 1\n");
    let err = RegisterMap::from_toml_str(&text).expect_err("U@0..1 and I@1..2 overlap");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            RegMapError::RegisterOverlap {
                address: 1,
                first: "U",
                second: "I"
            }
        ),
        "{msg}"
    );
}

#[test]
fn overlapping_coils_are_rejected() {
    let text = RegisterMap::default_sim_toml().replace("source = 7", "source = 3");
    let err = RegisterMap::from_toml_str(&text).expect_err("source shares coil 3 with load 4");
    assert_eq!(
        err.to_string(),
        "coil address 3 is used by both load 4 and the source selector"
    );
}

#[test]
fn a_32_bit_value_at_the_last_address_is_rejected() {
    let text = RegisterMap::default_sim_toml().replace("address = 6\n", "address = 65535\n");
    let err = RegisterMap::from_toml_str(&text).expect_err("PR would need register 65536");
    assert!(
        matches!(err, RegMapError::AddressOutOfRange { quantity: "PR", .. }),
        "{err}"
    );
}

#[test]
fn an_address_beyond_u16_is_rejected_by_the_parser() {
    let text = RegisterMap::default_sim_toml().replace("address = 6\n", "address = 70000\n");
    assert!(matches!(
        RegisterMap::from_toml_str(&text),
        Err(RegMapError::Toml(_))
    ));
}

#[test]
fn zero_and_non_finite_scales_are_rejected() {
    for scale in ["0.0", "nan", "inf"] {
        let text = RegisterMap::default_sim_toml().replace(
            "address = 2\ntype = \"f32\"",
            &format!("address = 2\ntype = \"f32\"\nscale = {scale}"),
        );
        let err = RegisterMap::from_toml_str(&text).expect_err("bad scale");
        assert!(
            matches!(err, RegMapError::BadScale { quantity: "I", .. }),
            "{scale}: {err}"
        );
    }
}

#[test]
fn unknown_fields_and_wrong_load_count_are_rejected() {
    let extra = format!("{}\n[extra]\nx = 1\n", RegisterMap::default_sim_toml());
    assert!(RegisterMap::from_toml_str(&extra).is_err());
    let six =
        RegisterMap::default_sim_toml().replace("[0, 1, 2, 3, 4, 5, 6]", "[0, 1, 2, 3, 4, 5]");
    assert!(RegisterMap::from_toml_str(&six).is_err());
}

#[test]
fn switches_come_from_the_mapped_coils() {
    let map = RegisterMap::default_sim();
    let s = map
        .switches_from_coils(|a| Some(a == 2 || a == 7))
        .expect("all coils present");
    assert_eq!(s.loads, [false, false, true, false, false, false, false]);
    assert_eq!(s.source, 2);
    assert_eq!(map.switches_from_coils(|a| (a != 5).then_some(false)), None);
}

#[test]
fn decoded_values_read_as_the_decimals_the_plc_meant() {
    // A user reading JSON expects 240.87 V, not 240.8699951171875 (f32 widened) nor
    // 236.12300000000002 (236123 mV × 0.001).
    let f32_map = map_with("f32", "high_first", 1.0, [0, 2, 4, 6]);
    let m = Measurement {
        u: 240.87,
        i: 2.514,
        pa: 571.3,
        pr: -6.2,
    };
    let back = f32_map.decode(&f32_map.encode(&m).unwrap()).unwrap();
    assert_eq!(back, m);
    let int_map = map_with("i32", "low_first", 0.001, [0, 2, 4, 6]);
    let m = Measurement {
        u: 236.123,
        i: 0.1,
        pa: -16.0,
        pr: 181.907,
    };
    let back = int_map.decode(&int_map.encode(&m).unwrap()).unwrap();
    assert_eq!(back, m);
}
