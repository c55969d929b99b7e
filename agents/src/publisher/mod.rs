//! publisher (skeleton).
