//! Flow control in a worker: limits per key (`limits_concurrency`, `throttle`).
//! Submodules: `admit` (a fetch's limited jobs, admitted or sent to wait in one
//! `ACQUIRE`) and `leases` (the heartbeat's renewal of the concurrency leases held).
//! The scripts are in `store::flow_scripts`.

pub mod admit;
pub mod leases;
