//! `pullgate`: install the crypto provider, parse flags, start logging, run a command.

use std::process::ExitCode;

use pullgate::cli::{Cli, Status};

fn main() -> ExitCode {
    pullgate::install_crypto_provider();
    // As `kubectl-pullgate` (a kubectl plugin) help and usage say `kubectl pullgate`.
    let cli = Cli::parse_invoked();
    if let Err(e) = cli.log.init() {
        eprintln!("error: {e:#}");
        return Status::Usage.into();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Status::Usage.into();
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            Status::Usage.into()
        }
    }
}
