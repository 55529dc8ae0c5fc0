//! Statistics for conclusions over a sweep: paired tests between variants, multiple-comparison
//! corrections, power, and ranks over datasets. Every function is pinned to SciPy's value on fixed
//! inputs in `tests/stats.rs`.

pub mod aoa;
pub mod conformal;
pub mod paired;
pub mod ranks;
pub mod special;
