//! Generates the auth-service gRPC client and server from `proto/` without a system `protoc`:
//! protox parses the files in-process, tonic-prost-build emits the Rust code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["ibex/auth/v1/auth.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // The request carries the bearer token: its derived Debug would print it into any log line
        // that formats the message, so the crate implements a redacting Debug by hand.
        .skip_debug([
            "ibex.auth.v1.ValidateTokenRequest",
            "ibex.auth.v1.CreateTokenResponse",
        ])
        .compile_fds(fds)?;
    Ok(())
}
