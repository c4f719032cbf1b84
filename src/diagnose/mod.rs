//! `diagnose`: the checks, each a module returning [`finding::Finding`]s, and the report.
//! The orchestration (what runs, concurrently, with which timeout) is in `commands::diagnose`.

pub mod app;
pub mod config;
pub mod finding;
pub mod mysql;
pub mod nodes;
pub mod pods;
pub mod redis;
pub mod report;
pub mod signatures;
