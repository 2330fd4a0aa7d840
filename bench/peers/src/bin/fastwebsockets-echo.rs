//! Echo server on fastwebsockets, as its documentation shows: a hyper HTTP/1 server whose
//! upgrade handler hands the stream to a `FragmentCollector` and writes back every data frame.

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use ws_bench_peers::fastwebsockets_echo::serve;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind(ws_bench_peers::bind_addr()).await?;
    ws_bench_peers::announce(listener.local_addr()?);
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            loop {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                tokio::task::spawn_local(async move {
                    let io = TokioIo::new(stream);
                    let _ = http1::Builder::new()
                        .serve_connection(io, service_fn(serve))
                        .with_upgrades()
                        .await;
                });
            }
        })
        .await
}
