//! averager (skeleton).
