//! Small programs to copy from, in this package's examples: `tokio_echo.rs` (an echo server
//! on tokio, with `StreamExt`/`SinkExt`) and `client.rs` (a command-line client).
