//! One module per subcommand of `gauntlet` itself, and [`suite`] for those the suites add.

pub mod audit;
pub mod connect;
pub mod coverage;
pub mod list;
pub mod mutants;
pub mod run;
pub mod suite;
