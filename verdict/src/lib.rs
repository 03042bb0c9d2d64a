//! The exit codes every crasher command and every part of the harness
//! shares, in one place: 0 the property holds, 1 a violation was found,
//! 2 usage or environment error, 3 the verdict is unknown.

/// The property holds (or the command succeeded).
pub const HOLDS: u8 = 0;
/// A violation was found.
pub const VIOLATION: u8 = 1;
/// Usage or environment error.
pub const USAGE: u8 = 2;
/// Nothing could be concluded.
pub const UNKNOWN: u8 = 3;
