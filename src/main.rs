fn main() -> std::process::ExitCode {
    atcr::cli::main()
}
