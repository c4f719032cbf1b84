//! One module per command.

pub mod backup;
pub mod diagnose;
pub mod incident;
pub mod logs;
pub mod nodes;
pub mod plan;
pub mod pods;
pub mod restart;
pub mod restore;
pub mod runbook;
pub mod sandbox;
pub mod scale;
