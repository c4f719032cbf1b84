//! Integration tests: the real binary against a real control plane, MariaDB and Redis (see
//! `support`). No mock stands in for any of them.

mod diag_support;
mod support;

mod api_calls;
mod audit;
mod backup;
mod backup_schedule;
mod bad_input;
mod bench;
mod cluster_errors;
mod containers;
mod diag_mysql;
mod diag_redis;
mod diag_scale;
mod diagnose;
mod fast_load;
mod in_cluster;
mod incident;
mod logs;
mod metrics;
mod nodes;
mod pods;
mod redaction;
mod runbook;
mod sandbox;
mod scale;
