//! Shared by the peer echo servers: the address argument and the line `cargo xtask bench`
//! reads to find the port.

/// The address to bind: the first argument, or 127.0.0.1:0.
pub fn bind_addr() -> String {
    std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string())
}

/// Prints the line the benchmark waits for.
pub fn announce(addr: std::net::SocketAddr) {
    use std::io::Write;
    println!("listening on ws://{addr}");
    let _ = std::io::stdout().flush();
}
