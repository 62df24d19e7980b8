//! `pullgate audit`: the workloads whose next pod will fail, and the existing pods whose secrets no
//! longer cover their images. A pure core ([`workload`], [`pod`], [`object`], [`report`]) decides
//! from plain data with the production engine; a thin adapter ([`cluster`]) reads the cluster
//! page by page and feeds it; [`policyreport`] turns a report into PolicyReports, pure, and
//! [`publish`] writes them.

pub mod background;
pub mod cluster;
pub mod live;
pub mod object;
pub mod pod;
pub mod policyreport;
pub mod publish;
pub mod report;
pub mod schedule;
pub mod verify;
pub mod workload;

pub use report::{AuditReport, AuditResult, Auditor, ResultScope, UsageIndex, Verdict};
