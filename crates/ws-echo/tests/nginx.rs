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

/// A port nothing listens on now (nginx needs one in its configuration; another process
/// could take it before nginx binds, which would fail the test loudly, not wrongly).
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

/// The configuration docs/deploy.md gives ("Behind nginx"), taken from the page itself so
/// that what is tested is what is documented, with a test's ports and certificate, and with
/// what a test needs around it: nginx in the foreground as one process (`daemon off`,
/// `master_process off`), its files in `dir`.
fn config(
    dir: &Path,
    port: u16,
    backends: &[SocketAddr],
    cert: &Path,
    key: &Path,
) -> Result<String> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/deploy.md");
    let page = std::fs::read_to_string(&docs)?;
    let start = page.find("```nginx\n").context("no nginx block in docs/deploy.md")? + 9;
    let documented = &page[start..start + page[start..].find("```").context("unclosed block")?];
    let mut http = documented.to_owned();
    for (from, to) in [
        ("server 127.0.0.1:9001;", format!("server {};", backends[0])),
        ("server 127.0.0.1:9002;", format!("server {};", backends[1])),
        ("listen 443 ssl;", format!("listen 127.0.0.1:{port} ssl;")),
        ("/etc/ssl/ws.example/fullchain.pem", cert.display().to_string()),
        ("/etc/ssl/ws.example/privkey.pem", key.display().to_string()),
    ] {
        ensure!(http.contains(from), "docs/deploy.md's nginx block has no {from:?}");
        http = http.replacen(from, &to, 1);
    }
    let d = dir.display();
    // Inside `http {`: its logs and temporary files in `dir`.
    let http = http.replacen(
        "http {\n",
        &format!(
            "http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/body;\n    \
             proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
             uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n"
        ),
        1,
    );
    Ok(format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n{http}"
    ))
}

/// The `ws_server::access` lines in a JSON log so far.
fn access_lines(log: &Path) -> Result<Vec<serde_json::Value>> {
    Ok(std::fs::read_to_string(log)?
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "ws_server::access")
        .collect())
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
        config(&dir, port, &[first_addr, second_addr], &issued.cert, &issued.key)?,
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
    // Each process served two connections, each closed by the client with 4001. A line is
    // written as its connection ends, once nginx has ended its side too: wait for them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while logs
        .iter()
        .map(|log| access_lines(log).map(|lines| lines.len()))
        .sum::<Result<usize>>()?
        < 4
    {
        ensure!(Instant::now() < deadline, "the access lines did not all come within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(nginx);
    drop((first, second));
    for log in &logs {
        let ends = access_lines(log)?;
        assert_eq!(ends.len(), 2, "{}: {ends:#?}", log.display());
        for end in &ends {
            assert_eq!(end["fields"]["code"], 4001, "{end}");
            assert_eq!(end["fields"]["closed_by"], "client", "{end}");
        }
    }
    Ok(())
}
