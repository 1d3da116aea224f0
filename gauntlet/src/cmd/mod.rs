//! One module per subcommand.

pub mod audit;
pub mod backtest;
pub mod list;
pub mod load;
pub mod report;
pub mod run;
