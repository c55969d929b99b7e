//! ledger (skeleton).
