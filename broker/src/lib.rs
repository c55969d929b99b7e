//! wattchain's MQTT broker: rumqttd embedded behind a front door that guards it.
//!
//! (Skeleton: the front door, config and readiness are built in the foundation issue.)

/// Largest MQTT packet, in bytes, that the broker accepts and our clients send or receive.
///
/// One place for the limit: the broker applies it at the front door and to rumqttd, and the
/// agents' MQTT session uses it for rumqttc's packet limits (whose 10 KiB default is too small
/// for a window of samples).
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1024 * 1024;
