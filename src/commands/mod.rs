//! One module per command.

pub mod diagnose;
pub mod logs;
pub mod nodes;
pub mod pods;
pub mod sandbox;
