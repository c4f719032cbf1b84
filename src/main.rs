//! The `newapi-ops` binary: everything lives in the library.
fn main() -> std::process::ExitCode {
    newapi_ops::main()
}
