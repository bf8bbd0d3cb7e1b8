//! Rate limits.

pub(crate) mod shared;
