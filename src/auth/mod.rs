//! Authentication: every non-public request is vouched for by the platform's auth service.

pub mod cache;
pub mod caller;
pub mod client;
pub mod dev;
pub mod layer;
pub mod permissions;
pub mod proto;
pub mod token;

pub use caller::{Caller, CallerToken};
pub use client::{AuthClient, AuthFailure, AuthReachable};
pub use layer::Validator;
pub use permissions::Permissions;
