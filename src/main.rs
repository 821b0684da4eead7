//! The `phigate` binary: everything lives in the library; `cli::run` parses arguments and
//! returns the exit code.

fn main() -> std::process::ExitCode {
    phigate::cli::run()
}
