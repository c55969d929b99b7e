//! bus (skeleton).
