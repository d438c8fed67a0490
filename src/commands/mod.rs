//! One module per subcommand.

pub mod batch;
pub mod bench;
pub mod check;
pub mod dump;
pub mod explain;
pub mod export;
pub mod import;
pub mod run;
