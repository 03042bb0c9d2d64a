//! Exit codes every crasher command and every part of the harness shares
//! (the `verdict` crate), under the name the CLI code uses.

pub use verdict::{HOLDS, UNKNOWN, USAGE, VIOLATION};
