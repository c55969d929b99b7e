//! topics (skeleton).
