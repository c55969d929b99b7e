//! regmap (skeleton).
