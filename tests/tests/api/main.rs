//! One integration-test binary: the whole system in-process, over real HTTP on 127.0.0.1,
//! with real agent processes as VMs.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod auth;
mod aws_pipeline;
mod boot_script;
mod claims;
mod cli;
mod collect;
mod command_log;
mod connections;
mod costs;
mod crash;
mod desktop;
mod durability;
mod dynamodb;
mod end_to_end;
mod escaping;
mod fuzz;
mod helpers;
mod liveness;
mod logs;
mod long_poll;
mod metrics;
mod network;
mod offers;
mod pools;
mod requests;
mod seats;
mod storage_faults;
mod template;
mod validation;
