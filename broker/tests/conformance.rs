//! The MQTT conformance suite (issue 11, "Conformance, tested"): every case is written once
//! and runs against our broker (in-process, free port) and against mosquitto (its own
//! process, free port) as the reference, with the same assertion; where mosquitto itself
//! deviates from the specification, the case says so in its code.
//!
//! Tests are named `conformance::<area>::<case>::{ours,mosquitto}`.

mod common;

mod conformance {
    pub mod target;

    mod crashes;
    mod probe;
}
