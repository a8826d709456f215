//! The exchange's FIX gateway.
//!
//! - [`codec`]: framing, zero-copy parsing and encoding of FIX tag=value messages.
//! - [`dictionary`]: QuickFIX-format data dictionaries and validation driven by them.
//! - [`time`]: UTC timestamps in FIX formats.

pub mod codec;
pub mod dictionary;
pub mod time;
