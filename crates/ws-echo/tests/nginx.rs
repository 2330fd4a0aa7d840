//! ws-echo behind a real reverse proxy: Debian's nginx terminates TLS and balances across two
//! ws-echo processes, with the configuration docs/deploy.md gives. A real client (ws-transport
//! over wss://) echoes a small and a large message through it, and a close code of its own
//! comes back through the proxy. In CI nginx must be there (.ci/run installs it); elsewhere
//! the test is skipped loudly.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ws_tests::tls::TestPki;
use ws_transport::ws_proto::CloseCode;
use ws_transport::{Connector, Message, Proxy, connect_tcp_with};

const BIN: &str = env!("CARGO_BIN_EXE_ws-echo");

/// A child process, killed and reaped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ws-echo on `127.0.0.1:0`, its JSON log in `log`; returns it and where it listens.
fn ws_echo(log: &Path) -> Result<(Process, SocketAddr)> {
    let mut child = Command::new(BIN)
        .args(["--bind", "127.0.0.1:0", "--threads", "1", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting ws-echo")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("listening on ws://")
        .with_context(|| format!("first line {line:?}"))?
        .parse()?;
    Ok((Process(child), addr))
}

/// A port nothing listens on now (nginx needs one in its configuration).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The nginx binary: `$PATH`, then Debian's place.
fn nginx() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("nginx"));
    on_path.chain([PathBuf::from("/usr/sbin/nginx")]).find(|path| path.is_file())
}

/// The configuration of docs/deploy.md ("Behind nginx"), with a test's paths and ports, in
/// the foreground as one process (`daemon off`, `master_process off`) with its files in
/// `dir`.
fn config(dir: &Path, port: u16, backends: &[SocketAddr], cert: &Path, key: &Path) -> String {
    let d = dir.display();
    let servers: String = backends.iter().map(|addr| format!("        server {addr};\n")).collect();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
         http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/body;\n    \
         proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
         uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\n\
         {proxy}",
        proxy = deploy_config(port, &servers, cert, key),
    )
}

/// The `http` block's body that docs/deploy.md shows, for `servers` behind `port`.
fn deploy_config(port: u16, servers: &str, cert: &Path, key: &Path) -> String {
    format!(
        "    upstream ws_echo {{\n{servers}    }}\n\n\
         # Connection: upgrade when the client asks for one, close otherwise.\n    \
         map $http_upgrade $connection_upgrade {{\n        default upgrade;\n        '' close;\n    }}\n\n    \
         server {{\n        listen 127.0.0.1:{port} ssl;\n        \
         ssl_certificate {cert};\n        ssl_certificate_key {key};\n\n        \
         location / {{\n            proxy_pass http://ws_echo;\n            \
         proxy_http_version 1.1;\n            \
         proxy_set_header Upgrade $http_upgrade;\n            \
         proxy_set_header Connection $connection_upgrade;\n            \
         proxy_set_header Host $host;\n            \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n            \
         # WebSockets stay open: longer than ws-echo's keepalive (a ping per 30 s).\n            \
         proxy_read_timeout 300s;\n            proxy_send_timeout 300s;\n            \
         proxy_buffering off;\n        }}\n    }}\n}}\n",
        cert = cert.display(),
        key = key.display(),
    )
}

/// Waits until something accepts connections on `port`.
fn wait_for(port: u16, nginx: &mut Process, dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = nginx.0.try_wait()? {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            bail!("nginx exited with {status}:\n{log}");
        }
        ensure!(Instant::now() < deadline, "nginx did not listen on {port} within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn echoes_through_nginx_terminating_tls_in_front_of_two_processes() -> Result<()> {
    let Some(nginx_bin) = nginx() else {
        if ws_tests::in_ci() {
            bail!("nginx is missing: run .ci/run (it installs Debian's nginx)");
        }
        eprintln!("SKIPPED: nginx is missing (apt-get install nginx, or run .ci/run)");
        return Ok(());
    };
    let pki = TestPki::new()?;
    let issued = pki.localhost()?;
    let dir = pki.dir().join("nginx");
    std::fs::create_dir_all(&dir)?;
    let logs = [dir.join("ws-echo-1.log"), dir.join("ws-echo-2.log")];
    let (first, first_addr) = ws_echo(&logs[0])?;
    let (second, second_addr) = ws_echo(&logs[1])?;
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        config(&dir, port, &[first_addr, second_addr], &issued.cert, &issued.key),
    )?;
    let mut nginx = Process(
        Command::new(&nginx_bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nginx")?,
    );
    wait_for(port, &mut nginx, &dir)?;

    let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
    let url = format!("wss://localhost:{port}/");
    let large: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    smol::block_on(async {
        // Four connections: round robin gives each process two.
        for i in 0..4 {
            let (mut ws, _) = connect_tcp_with(&url, Default::default(), &connector).await?;
            ws.send(format!("hello {i}")).await?;
            assert_eq!(ws.recv().await?, Some(Message::Text(format!("hello {i}"))));
            if i == 0 {
                ws.send(large.as_slice()).await?;
                assert!(ws.recv().await? == Some(Message::Binary(large.clone())), "8 MiB echo");
            }
            // A code of our own, answered by ws-echo and carried back through nginx.
            ws.close(CloseCode(4001), "done").await?;
            assert_eq!(ws.peer_close().map(|(code, _)| code), Some(CloseCode(4001)));
        }
        anyhow::Ok(())
    })?;
    drop(nginx);
    drop((first, second));
    // Each process served two connections, each closed by the client with 4001.
    for log in &logs {
        let text = std::fs::read_to_string(log)?;
        let ends: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["target"] == "ws_server::access")
            .collect();
        assert_eq!(ends.len(), 2, "{}: {text}", log.display());
        for end in &ends {
            assert_eq!(end["fields"]["code"], 4001, "{end}");
            assert_eq!(end["fields"]["closed_by"], "client", "{end}");
        }
    }
    Ok(())
}
