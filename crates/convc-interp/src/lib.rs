//! The reference interpreter (the oracle).
