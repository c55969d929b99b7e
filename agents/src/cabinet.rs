//! cabinet (skeleton).
