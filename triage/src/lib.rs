//! Post-mortem of crasher runs: what went wrong during a long unattended
//! soak, from the logs of its processes (plain and rotated `.gz`) and the
//! run's own record.
//!
//! # Layout
//! - [`record`]: the run record (`run.json`) the soak writes, and
//!   [`sampler`], the CPU and memory sampler that feeds it.
//! - [`scan`]: reading one log fast and finding failure evidence in it;
//!   [`signature`] turns an evidence line into its signature, [`time`]
//!   reads line timestamps.
//! - [`timeline`]: the harness's events (crashes, restarts, joins...) in
//!   time, from `run.json` or `run.log`.
//! - [`analysis`]: the triage of a whole run; [`text`] prints it.
//! - [`runs`]: the list of past runs; [`report`]: the HTML report.
//! - [`cli`]: `crasher triage`, `crasher runs` and `crasher report`.

pub mod analysis;
pub mod cli;
pub mod error;
pub mod record;
pub mod report;
pub mod runs;
pub mod sampler;
pub mod scan;
pub mod signature;
pub mod text;
pub mod time;
pub mod timeline;

pub use analysis::{triage, Triage, Verdict};
pub use error::TriageError;
pub use record::RunRecord;
pub use sampler::Sampler;
