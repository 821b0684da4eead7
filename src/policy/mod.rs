//! The policy: which rule a request falls under, what that rule demands, and the `Permit` that
//! proves a request was authorised. Default deny: a request no rule matches is refused. This
//! module owns path normalisation, so the path that was matched is the path that is forwarded.
//! It never reads tokens itself — it receives the verified token's grant — and never does I/O
//! beyond reading its own file.

mod break_glass;
pub mod fhir;
pub mod path;
mod pattern;
mod permit;
mod requirement;
mod route;
mod rule;
mod scope;
pub mod seal;
mod store;
mod table;

pub use self::break_glass::{BreakGlass, Emergency, MAX_JUSTIFICATION};
pub use self::path::{NormalPath, PathFault};
pub use self::permit::{FhirFacts, Permit};
pub use self::requirement::Requirement;
pub use self::route::{Content, Grant, Refusal, RefusalClass, Route};
pub use self::rule::{Mode, Rule};
pub use self::scope::{Scope, ScopeClaimFault, ScopeSet};
pub use self::store::PolicyStore;
pub use self::table::{PolicyFault, PolicyLoadError, PolicyProblem, PolicyTable, Published};
