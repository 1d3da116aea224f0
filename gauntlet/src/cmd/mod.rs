//! One module per subcommand of `gauntlet` itself, and [`suite`] for those the suites add.

pub mod audit;
pub mod list;
pub mod run;
pub mod suite;
