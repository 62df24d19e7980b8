//! The pure decision engine: no I/O, no async; plain data in, a decision out.

pub mod diagnosis;
pub mod evaluate;
pub mod findings;
pub mod gostd;
pub mod index;
pub mod keyring;
pub mod podview;
pub mod policy;
pub mod pullsecret;
pub mod reference;
pub mod registry_class;
pub mod verification;

pub use evaluate::{
    evaluate_pod, evaluate_service_account, Decision, ImageDetail, Operation, PodContext,
    ServiceAccountDecision,
};
pub use findings::{Code, Finding, Severity};
