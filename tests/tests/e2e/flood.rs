//! Issue 13 (finding 4): a flood of idle connections never locks users out of
//! the bastion. 1,000 slowloris connections (idle, or a version line without
//! its end), reconnected as fast as the bastion drops them, from one loopback
//! address or from 50; meanwhile a real `ssh -J` with a TPA certificate logs
//! in within 2 s, and the bastion holds one file descriptor per connection.
//! Everything runs on 127.0.0.0/8 and stops with the test.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::harness::{Setup, setup, ssh};

/// How many connections the flood holds.
const FLOOD: usize = 1_000;
/// The longest a legitimate login may take under the flood (issue 13), on a
/// machine where it takes well under that without the flood. On a loaded
/// machine, where the same login takes longer than half of it without any
/// flood, the bound is twice that quiet time instead: the test measures what
/// the flood adds, not the machine.
const LOGIN_WITHIN: Duration = Duration::from_secs(2);
/// Reconnections per scan of the flood's sockets (every 50 ms): an attacker
/// that reconnects at up to 4,000 connections a second.
const RECONNECTS_PER_SCAN: usize = 200;

/// A TCP connection from `source` (any 127.0.0.0/8 address) to `to`.
fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    // A port whose earlier connection is in TIME_WAIT may be bound again
    // (the e2e suite leaves thousands on 127.0.0.1 while it runs).
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &SocketAddrV4::new(source, 0))?;
    rustix::net::connect(&fd, &to)?;
    let stream = TcpStream::from(fd);
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// A slowloris flood in a thread; stopped (and its sockets closed) on drop.
struct Flood {
    /// True while the flood runs (set by its thread after the first wave).
    running: Arc<AtomicBool>,
    /// Sockets the flood believes open now.
    open: Arc<AtomicUsize>,
    /// Reconnections after the bastion dropped one.
    reconnects: Arc<AtomicUsize>,
    /// Sockets connected by the first wave (kept apart from `open`, which
    /// the first scan overwrites once the bastion starts evicting).
    first_wave: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    /// One flood at a time in this test process: each holds 1,000 sockets,
    /// and the tests of one binary share its open-file limit.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

/// Taken by every running [`Flood`].
static FLOODS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Raises this process's soft open-file limit to its hard limit (a flood
/// holds 1,000 sockets; the usual soft limit is 1,024).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit).expect("raise the soft open-file limit");
    }
}

impl Flood {
    /// Opens `FLOOD` connections spread over `sources` and keeps them open.
    fn start(target: SocketAddr, sources: Vec<Ipv4Addr>) -> Self {
        let one_at_a_time = FLOODS.lock().unwrap_or_else(|e| e.into_inner());
        raise_open_file_limit();
        let running = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let reconnects = Arc::new(AtomicUsize::new(0));
        let first_wave = Arc::new(AtomicUsize::new(0));
        let (s, o, r, w) = (
            running.clone(),
            open.clone(),
            reconnects.clone(),
            first_wave.clone(),
        );
        let last_error = Arc::new(std::sync::Mutex::new(None::<String>));
        let err = last_error.clone();
        let thread = std::thread::spawn(move || {
            let source = |i: usize| sources[i % sources.len()];
            // Half stay silent, half send a version line without its end.
            let open_one = |i: usize| -> Option<TcpStream> {
                let mut stream = match connect_from(source(i), target) {
                    Ok(stream) => stream,
                    Err(e) => {
                        *err.lock().unwrap() = Some(e.to_string());
                        return None;
                    }
                };
                if i % 2 == 1 {
                    let _ = stream.write_all(b"SSH-2.0-slow");
                }
                Some(stream)
            };
            let mut sockets: Vec<Option<TcpStream>> = (0..FLOOD).map(open_one).collect();
            // An attacker retries what did not connect at once (a loaded
            // machine drops some of a burst of 1,000 handshakes); bounded.
            for _ in 0..20 {
                if sockets.iter().all(Option::is_some) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                for (i, slot) in sockets.iter_mut().enumerate() {
                    if slot.is_none() {
                        *slot = open_one(i);
                    }
                }
            }
            // The initial wave, before the bastion evicts any of it.
            let connected = sockets.iter().flatten().count();
            w.store(connected, Ordering::Relaxed);
            o.store(connected, Ordering::Relaxed);
            s.store(true, Ordering::Relaxed);
            let mut buf = [0u8; 512];
            while s.load(Ordering::Relaxed) {
                let mut budget = RECONNECTS_PER_SCAN;
                let mut alive = 0;
                for (i, slot) in sockets.iter_mut().enumerate() {
                    let closed = match slot {
                        None => true,
                        Some(stream) => match stream.read(&mut buf) {
                            Ok(0) => true,
                            Ok(_) => false,
                            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                        },
                    };
                    if closed && budget > 0 {
                        budget -= 1;
                        *slot = open_one(i);
                        r.fetch_add(1, Ordering::Relaxed);
                    } else if closed {
                        *slot = None;
                    }
                    if slot.is_some() {
                        alive += 1;
                    }
                }
                o.store(alive, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let flood = Self {
            running,
            open,
            reconnects,
            first_wave,
            thread: Some(thread),
            _one_at_a_time: one_at_a_time,
        };
        // Let the flood connect and take the bastion's slots: the thread
        // marks itself running once its first wave is connected.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !flood.running.load(Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "the flood did not connect");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The flood must outnumber the bastion's unauthenticated budget
        // (256) several times over; on a loaded machine the kernel drops part
        // of a burst of 1,000 handshakes to one listener, which is the
        // attacker's problem, not a weaker flood.
        let first_wave = flood.first_wave.load(Ordering::Relaxed);
        assert!(
            first_wave >= FLOOD / 2,
            "the flood connected only {first_wave} (last connect error: {:?})",
            last_error.lock().unwrap()
        );
        std::thread::sleep(Duration::from_secs(1));
        flood
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The time `ssh web-1 true` (through the bastion) takes; panics if it fails.
fn timed_login(setup: &Setup) -> Duration {
    let started = Instant::now();
    let out = ssh(&setup.ssh_config, "web-1", "true");
    let took = started.elapsed();
    if !out.status.success() {
        // The flood's evictions would fill any tail of the log: the login's
        // own lines are among the others.
        let log = setup.bastion_log();
        let (evictions, others): (Vec<&str>, Vec<&str>) =
            log.lines().partition(|l| l.contains("end=Evicted"));
        panic!(
            "ssh -J failed after {took:?}: {}\nbastion log without its {} evictions (tail):\n{}",
            String::from_utf8_lossy(&out.stderr),
            evictions.len(),
            tail(&others.join("\n"), 30)
        );
    }
    took
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Open file descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn login_gets_through(sources: Vec<Ipv4Addr>) {
    let tmp = tempfile::tempdir().unwrap();
    let setup = setup(tmp.path());
    let quiet = timed_login(&setup);
    let flood = Flood::start(setup.bastion_addr, sources);
    let mut times = Vec::new();
    for _ in 0..3 {
        times.push(timed_login(&setup));
    }
    let (open, reconnects) = (
        flood.open.load(Ordering::Relaxed),
        flood.reconnects.load(Ordering::Relaxed),
    );
    eprintln!(
        "ssh -J: {quiet:?} without the flood, {times:?} with {open} flood connections open ({reconnects} reconnections)"
    );
    // Every login succeeded (timed_login checks); the typical one is fast.
    times.sort();
    let median = times[1];
    let bound = LOGIN_WITHIN.max(quiet * 2);
    assert!(
        median < bound,
        "ssh -J took {median:?} (median of {times:?}) under the flood, bound {bound:?} (without the flood: {quiet:?})"
    );
    drop(flood);
}

#[test]
fn ssh_jump_gets_through_a_slowloris_from_one_address() {
    login_gets_through(vec![Ipv4Addr::new(127, 0, 0, 1)]);
}

#[test]
fn ssh_jump_gets_through_a_slowloris_from_fifty_addresses() {
    login_gets_through((1..=50).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect());
}

#[test]
fn the_bastion_holds_one_descriptor_per_connection() {
    // Issue 13: `try_clone` gave every connection two descriptors, so at a
    // 1,024 limit accept failed near 500 connections.
    let tmp = tempfile::tempdir().unwrap();
    let mut setup = setup(tmp.path());
    // Room for the whole flood, so every connection is held.
    setup.restart_bastion_with("[limits]\nmax_unauthenticated = 2000\nmax_unauthenticated_per_address = 2000\nhandshake_timeout = \"30s\"\n");
    let pid = setup.bastion_pid();
    let before = descriptors(pid);
    let flood = Flood::start(setup.bastion_addr, vec![Ipv4Addr::new(127, 0, 0, 1)]);
    let held = flood.open.load(Ordering::Relaxed);
    let during = descriptors(pid);
    drop(flood);
    eprintln!("tpa-bastion descriptors: {before} idle, {during} with {held} connections");
    assert!(held >= FLOOD * 9 / 10, "the flood held only {held}");
    assert!(
        during <= before + held + 50,
        "{during} descriptors for {held} connections ({before} before)"
    );
}
