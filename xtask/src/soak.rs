//! `cargo xtask soak`: ws-echo under a realistic mix for a set time, every echoed byte checked.
//!
//! The mix, on one generator thread: most connections send small messages now and then (some
//! fragmented, some after a ping); a tenth compress; a few stream messages of megabytes, half
//! of them writing the whole message before reading and some stalling before they read;
//! some connect and then say nothing; and, over and over, connections that come and go after
//! one echo, that reset in the middle of a frame, and that send a bad frame (each of which
//! must get its close code). Every few seconds it prints connections, messages verified,
//! messages lost or corrupted, and the server's RSS and CPU. It fails if a message is lost or
//! corrupted, a bad frame gets the wrong answer, or the server's RSS keeps growing after the
//! warm-up (the last third of the run against the middle third).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_io::Timer;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::load::{self, Echoer, Rng, Shape};

/// What the run counts.
#[derive(Default)]
struct Counts {
    /// Connections open now.
    open: Cell<i64>,
    verified: Cell<u64>,
    bytes: Cell<u64>,
    /// Messages whose echo was wrong or never came, on connections that behaved.
    lost: Cell<u64>,
    /// Connections that came and went, reset, or sent a bad frame and got the right close.
    churned: Cell<u64>,
    resets: Cell<u64>,
    bad_frames: Cell<u64>,
    /// The first few failures, to print.
    failures: RefCell<Vec<String>>,
}

impl Counts {
    fn fail(&self, what: String) {
        self.lost.set(self.lost.get() + 1);
        let mut failures = self.failures.borrow_mut();
        if failures.len() < 10 {
            failures.push(what);
        }
    }

    fn verified(&self, bytes: usize) {
        self.verified.set(self.verified.get() + 1);
        self.bytes.set(self.bytes.get() + bytes as u64);
    }
}

/// The run's shape.
struct Plan {
    connections: usize,
    duration: Duration,
}

/// `cargo xtask soak [--minutes M | --seconds S] [--connections N] [--engine E]` (E as
/// ws-echo's `--engine`; its default otherwise).
pub(crate) fn main(root: &Path, args: &[String]) -> Result<()> {
    let seconds = match args.iter().any(|a| a == "--minutes") {
        true => crate::flag::<u64>(args, "--minutes", None)? * 60,
        false => crate::flag(args, "--seconds", Some(600))?,
    };
    let plan = Plan {
        connections: crate::flag(args, "--connections", Some(10_000))?,
        duration: Duration::from_secs(seconds.max(10)),
    };
    crate::run("build ws-echo", crate::cargo().args(["build", "--release", "-p", "ws-echo"]))?;
    let engine = match args.iter().position(|a| a == "--engine") {
        Some(i) => Some(args.get(i + 1).context("--engine needs a value")?.as_str()),
        None => None,
    };
    let mut server = Server::start(root, plan.connections, engine)?;
    let result = run(&plan, server.addr, server.pid());
    server.stop()?;
    result
}

/// The ws-echo under test, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(root: &Path, connections: usize, engine: Option<&str>) -> Result<Self> {
        let mut child = Command::new(root.join("target/release/ws-echo"))
            .args(["--bind", "127.0.0.1:0", "--log", "error"])
            .args(["--max-connections", &(connections + 1000).to_string()])
            .args(engine.map(|engine| ["--engine", engine]).into_iter().flatten())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting ws-echo")?;
        let addr = crate::process::listening_addr(&mut child, "ws-echo")?;
        Ok(Self { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends the server; fails if it had already exited (it crashed).
    fn stop(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("ws-echo exited during the run ({status})");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(plan: &Plan, addr: SocketAddr, pid: u32) -> Result<()> {
    let ex = smol::LocalExecutor::new();
    let counts = Rc::new(Counts::default());
    let start = Instant::now();
    let end = start + plan.duration;
    smol::block_on(ex.run(async {
        let n = plan.connections;
        // The long-lived connections, by kind: (count, deflate).
        let kinds = [
            (Kind::Small, n * 8 / 10, false),
            (Kind::Small, n / 10, true),
            (Kind::Idle, n.saturating_sub(n * 9 / 10 + 16), false),
            (Kind::Large, 8, false),
            (Kind::Stalling, 8, false),
        ];
        let mut tasks = Vec::new();
        let mut seed = 1u64;
        for (kind, count, deflate) in kinds {
            for _ in 0..count {
                seed += 1;
                let echoer = Echoer::new(
                    load::connect_with(addr, deflate, None)
                        .await
                        .context("opening the long-lived connections")?,
                    seed,
                );
                counts.open.set(counts.open.get() + 1);
                let counts = Rc::clone(&counts);
                tasks.push(ex.spawn(long_lived(kind, echoer, seed, end, counts)));
            }
        }
        eprintln!(
            "soak: {} connections open after {:.1} s",
            counts.open.get(),
            start.elapsed().as_secs_f64()
        );
        // And the ones that come and go.
        for i in 0..8u64 {
            tasks.push(ex.spawn(churn(addr, i, end, Rc::clone(&counts))));
            tasks.push(ex.spawn(resets(addr, end, Rc::clone(&counts))));
            tasks.push(ex.spawn(bad_frames(addr, i, end, Rc::clone(&counts))));
        }
        let report = ex.spawn(reporter(pid, start, end, Rc::clone(&counts)));
        for task in tasks {
            task.await;
        }
        report.await
    }))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Small messages now and then: some fragmented, some after a ping.
    Small,
    /// Connects and says nothing (the server's keepalive drops it after 50 s).
    Idle,
    /// Messages of megabytes, back to back; every other one written whole before reading.
    Large,
    /// A message of a megabyte written whole, then a pause of a few seconds before reading.
    Stalling,
}

async fn long_lived(kind: Kind, mut echoer: Echoer, seed: u64, end: Instant, counts: Rc<Counts>) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut round = 0u64;
    // Spread the first messages over the first seconds.
    Timer::after(Duration::from_millis(rng.below(2000))).await;
    while Instant::now() < end {
        round += 1;
        let (size, shape, pause) = match kind {
            Kind::Idle => break,
            Kind::Small => {
                let shape = Shape {
                    fragments: if rng.below(8) == 0 { 1 + rng.below(4) as usize } else { 1 },
                    ping: rng.below(8) == 0,
                    ..Shape::default()
                };
                (20 + rng.below(1004) as usize, shape, Duration::from_millis(500 + rng.below(2500)))
            }
            Kind::Large => {
                let shape = Shape {
                    write_first: round % 2 == 0,
                    fragments: 1 + rng.below(3) as usize,
                    ..Shape::default()
                };
                ((1 << 20) + rng.below(3 << 20) as usize, shape, Duration::from_millis(100))
            }
            Kind::Stalling => {
                let shape = Shape {
                    write_first: true,
                    read_after: Duration::from_millis(1000 + rng.below(3000)),
                    ..Shape::default()
                };
                (1 << 20, shape, Duration::from_millis(500))
            }
        };
        // An echo that takes longer than this is lost (the server's write timeout is 30 s).
        let deadline = Timer::after(Duration::from_secs(25));
        let trip = echoer.round_trip_with(size, shape);
        match futures_lite::future::or(async { Some(trip.await) }, async {
            deadline.await;
            None
        })
        .await
        {
            Some(Ok(())) => counts.verified(size),
            Some(Err(err)) => {
                counts.fail(format!("{kind:?} connection: {err:#}"));
                break;
            }
            None => {
                counts.fail(format!("{kind:?} connection: no echo of {size} bytes within 25 s"));
                break;
            }
        }
        Timer::after(pause).await;
    }
    if matches!(kind, Kind::Idle) {
        Timer::at(end).await;
    }
    drop(echoer);
    counts.open.set(counts.open.get() - 1);
}

/// Connections that open, echo once, and close, over and over.
async fn churn(addr: SocketAddr, i: u64, end: Instant, counts: Rc<Counts>) {
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let result = async {
            let connection = load::connect_with(addr, n % 4 == 0, None).await?;
            let mut echoer = Echoer::new(connection, i * 1_000_003 + n);
            echoer.round_trip(64).await
        }
        .await;
        match result {
            Ok(()) => {
                counts.verified(64);
                counts.churned.set(counts.churned.get() + 1);
            }
            Err(err) => counts.fail(format!("churn connection: {err:#}")),
        }
        Timer::after(Duration::from_millis(20)).await;
    }
}

/// Connections that reset (RST) in the middle of a frame.
async fn resets(addr: SocketAddr, end: Instant, counts: Rc<Counts>) {
    while Instant::now() < end {
        let result = async {
            let (mut stream, _) = load::connect(addr, false).await?;
            // A binary frame of 1,000 bytes, of which 10 are sent.
            stream.write_all(&[0x82, 0x80 | 126, 0x03, 0xe8, 1, 2, 3, 4]).await?;
            stream.write_all(&[0u8; 10]).await?;
            rustix::net::sockopt::set_socket_linger(stream.get_ref(), Some(Duration::ZERO))?;
            Ok::<(), anyhow::Error>(())
        }
        .await;
        match result {
            Ok(()) => counts.resets.set(counts.resets.get() + 1),
            Err(err) => counts.fail(format!("reset connection: {err:#}")),
        }
        Timer::after(Duration::from_millis(50)).await;
    }
}

/// Connections that send a bad frame and must get the right close code: invalid UTF-8
/// (1007), an unmasked frame (1002), a frame over the limit (1009).
async fn bad_frames(addr: SocketAddr, i: u64, end: Instant, counts: Rc<Counts>) {
    let mut n = i;
    while Instant::now() < end {
        n += 1;
        let (frame, code): (&[u8], u16) = match n % 3 {
            0 => (&[0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28], 1007),
            1 => (&[0x82, 0x02, 1, 2], 1002),
            _ => (&[0x82, 0x80 | 127, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4], 1009),
        };
        match bad_frame(addr, frame).await {
            Ok(got) if got == code => counts.bad_frames.set(counts.bad_frames.get() + 1),
            Ok(got) => counts.fail(format!("a bad frame got close {got}, not {code}")),
            Err(err) => counts.fail(format!("bad-frame connection: {err:#}")),
        }
        Timer::after(Duration::from_millis(50)).await;
    }
}

/// Sends `frame` and returns the code of the close frame that answers it.
async fn bad_frame(addr: SocketAddr, frame: &[u8]) -> Result<u16> {
    let (mut stream, _) = load::connect(addr, false).await?;
    stream.write_all(frame).await?;
    let mut reply = Vec::new();
    let read = async {
        let mut buf = [0u8; 256];
        while reply.len() < 4 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                bail!("closed without a close frame");
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Ok(())
    };
    futures_lite::future::or(read, async {
        Timer::after(Duration::from_secs(10)).await;
        bail!("no close frame within 10 s")
    })
    .await?;
    if reply[0] != 0x88 {
        bail!("answered with opcode {:#x}, not a close frame", reply[0] & 0xf);
    }
    Ok(u16::from_be_bytes([reply[2], reply[3]]))
}

/// Prints the counts every five seconds; at the end, checks them and the server's RSS curve.
async fn reporter(pid: u32, start: Instant, end: Instant, counts: Rc<Counts>) -> Result<()> {
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let mut last_cpu = load::cpu_time_us(pid)?;
    let mut last = Instant::now();
    eprintln!("   t s    open  verified   lost   churned resets bad  RSS MiB  CPU %");
    while Instant::now() < end {
        Timer::after(Duration::from_secs(5)).await;
        let rss = load::rss_bytes(pid)?;
        let cpu = load::cpu_time_us(pid)?;
        let cpu_pct = (cpu - last_cpu) / last.elapsed().as_micros() as f64 * 100.0;
        (last_cpu, last) = (cpu, Instant::now());
        let t = start.elapsed().as_secs_f64();
        samples.push((t, rss));
        eprintln!(
            "{t:6.0} {:7} {:9} {:6} {:9} {:6} {:4} {:8.1} {:6.0}",
            counts.open.get(),
            counts.verified.get(),
            counts.lost.get(),
            counts.churned.get(),
            counts.resets.get(),
            counts.bad_frames.get(),
            rss as f64 / (1 << 20) as f64,
            cpu_pct
        );
    }
    let failures = counts.failures.borrow();
    if counts.lost.get() > 0 {
        bail!("{} messages lost or corrupted; first: {:#?}", counts.lost.get(), *failures);
    }
    if counts.verified.get() == 0 || counts.bad_frames.get() == 0 || counts.churned.get() == 0 {
        bail!("the mix did not run: nothing verified, churned or answered");
    }
    // Flat after the warm-up: the last third of the samples against the middle third.
    let third = samples.len() / 3;
    if third > 0 {
        let peak = |s: &[(f64, u64)]| s.iter().map(|&(_, rss)| rss).max().unwrap_or(0);
        let (middle, last) = (peak(&samples[third..2 * third]), peak(&samples[2 * third..]));
        let allowed = middle + (middle / 10).max(16 << 20);
        eprintln!(
            "RSS peak: {:.1} MiB in the middle third, {:.1} MiB in the last (allowed {:.1})",
            middle as f64 / (1 << 20) as f64,
            last as f64 / (1 << 20) as f64,
            allowed as f64 / (1 << 20) as f64
        );
        if last > allowed {
            bail!("the server's RSS kept growing: {middle} bytes, then {last}");
        }
    }
    eprintln!(
        "soak passed: {} messages ({:.1} MiB) verified, 0 lost; {} churned, {} resets, {} bad frames answered",
        counts.verified.get(),
        counts.bytes.get() as f64 / (1 << 20) as f64,
        counts.churned.get(),
        counts.resets.get(),
        counts.bad_frames.get()
    );
    Ok(())
}
