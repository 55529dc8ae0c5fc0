//! OpenCarbon-rs: reproduce, extend and stress-test OpenCarbon (IJCAI 2025), per-tile urban
//! carbon emission prediction from satellite images and POI data, with burn.
//!
//! The flow: spec → city → split and neighbourhoods → network → training → run directory.

pub mod backend;
pub mod baselines;
pub mod bench;
pub mod checked;
pub mod data;
pub mod fault;
pub mod launch;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod quote;
pub mod record;
pub mod report;
pub mod results;
pub mod runner;
pub mod spec;
pub mod stats;
pub mod track;
pub mod train;
pub mod transfer;
pub mod tune;
pub mod yaml;
