//! `diagnose`: the checks, each a module returning [`finding::Finding`]s, and the report.
//! [`gather`] decides what runs, concurrently, with which timeout, and lists the cluster's state
//! once for all of them: [`run`] with [`Options`] is the entry point of `diagnose`, of the
//! runbook action `diagnose` and of `incident`'s checks.

pub mod app;
pub mod backups;
pub mod config;
pub mod finding;
pub mod gather;
pub mod mysql;
pub mod nodes;
pub mod pods;
pub mod redis;
pub mod report;
pub mod signatures;

pub use gather::{
    MYSQL_URL_ENV, Options, REDIS_URL_ENV, could_not_run, run, run_learning, url_from_env,
};
