fn main() {
    // TLS uses ring only (no aws-lc, no OpenSSL): install it before any client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::process::exit(runbook::cli::main());
}
