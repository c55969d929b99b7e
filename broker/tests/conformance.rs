//! The MQTT conformance suite (issue 11, "Conformance, tested"): every case is written once
//! and runs against our broker (in-process, free port) and against mosquitto (its own
//! process, free port) as the reference, with the same assertion; where mosquitto itself
//! deviates from the specification, the case says so in its code.
//!
//! Tests are named `conformance::<area>::<case>::{ours,mosquitto}`; the full load
//! counts are `#[ignore]`d (`-- --ignored`).

mod common;

mod conformance {
    pub mod target;

    mod crashes;
    mod load;
    mod probe;
    mod qos;
    mod refusals;
    mod retained;
    mod sessions;
    mod shared;
    mod slow;
    mod suboptions;
    mod v5_flow;
    mod v5_topics;
    mod will;
}
