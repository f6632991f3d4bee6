fn main() -> std::process::ExitCode {
    photos_storage::process_main()
}
