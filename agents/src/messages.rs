//! messages (skeleton).
