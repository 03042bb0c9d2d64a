//! The run model shared by every way of driving a cluster (the soak
//! supervisor, the low-level commands of `manual`, `ops`, recipes): the
//! cluster's processes and membership, its port block, the profile that
//! describes the system under test, the run directory, the state file
//! other commands read, readiness queries, and the per-node disks and lab
//! network a run may give its nodes.

pub mod cluster;
pub mod disk;
pub mod hosts;
pub mod mirror;
pub mod network;
pub mod owner;
pub mod ports;
pub mod profile;
pub mod query;
pub mod rundir;
pub mod state;
