//! Runbooks: YAML files of typed steps against the deployment — loaded in phases (bytes → wire
//! type → analysed [`model::Runbook`]) so that only a validated runbook can run, then run by the
//! [`engine`] with dry-run, confirmations for mutating steps, and a transcript of every run.

pub mod answers;
pub mod args;
pub mod catalogue;
pub mod diag;
pub mod engine;
pub mod exec;
pub mod expr;
pub mod library;
pub mod model;
pub mod transcript;
