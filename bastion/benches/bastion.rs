//! Bastion benchmarks (issue 6), with real processes on 127.0.0.1:
//!
//! - **throughput**: `ssh -J` through `tpa-bastion` versus through OpenSSH's own
//!   sshd used as the jump host, same target sshd, same cipher, runs
//!   alternating in one process run, downloads (`head -c N /dev/zero` on the
//!   target) and uploads (`cat > /dev/null`); prints MB/s of each and the ratio;
//! - **memory**: resident size (`VmRSS`) of `tpa-bastion` with 1,000 concurrent
//!   idle forwarded sessions (russh clients in this process, a TCP echo server
//!   as the target);
//! - **session rate**: new forwarded sessions per second (connect, key exchange,
//!   certificate authentication, `direct-tcpip` open, one echo round trip,
//!   disconnect), from concurrent russh clients;
//! - **flood** (issue 13): time-to-login of `ssh -J` (OpenSSH, `ssh via-tpa
//!   true` through `tpa-bastion` to the target sshd) without a flood, then
//!   while 1,000 idle TCP connections (half silent, half a version line
//!   without its end; each one the bastion drops is reopened) are held from
//!   one loopback address, then from 50 (127.0.0.1–50); p50 and max of each.
//!
//! Run with `cargo bench -p bastion --bench bastion`. Knobs (environment):
//! `TPA_BENCH_BYTES` (transfer size, default 1 GiB), `TPA_BENCH_ROUNDS`
//! (alternating transfer rounds, default 3), `TPA_BENCH_IDLE` (idle sessions,
//! default 1000), `TPA_BENCH_SECS` (session-rate duration, default 5),
//! `TPA_BENCH_CONCURRENCY` (session-rate clients, default 16),
//! `TPA_BENCH_FLOOD` (idle connections of the flood part, default 1000),
//! `TPA_BENCH_LOGINS` (logins timed per flood scenario, default 10),
//! `TPA_BENCH_PARTS` (comma list of `throughput,memory,rate,flood`, default all).
//! Every process started here is killed by PID when the run ends.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark prints its figures on stdout"
)]

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::{Algorithm, Certificate, LineEnding, PrivateKey, PublicKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tpa_testkit::{Guard, free_port, wait_for_port};

const REQUEST: &str = "req_abenchbenchbenchbenchbench";
const CIPHER: &str = "aes256-gcm@openssh.com";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn require(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!("{program} not found: install openssh-server and openssh-client");
}

fn login_name() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout)
        .expect("utf-8 login")
        .trim()
        .to_owned()
}

fn write_private(path: &Path, key: &PrivateKey) {
    use std::os::unix::fs::PermissionsExt as _;
    let text = key.to_openssh(LineEnding::LF).expect("encode key");
    std::fs::write(path, text.as_bytes()).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

/// Everything the parts share: keys, a certificate, a target sshd, an
/// OpenSSH jump sshd, `tpa-bastion`, and a TCP echo server.
struct Setup {
    dir: tempfile::TempDir,
    login: String,
    user_key: PrivateKey,
    cert: Certificate,
    bastion_addr: SocketAddr,
    bastion_host_key: PublicKey,
    bastion_pid: u32,
    _processes: Vec<Guard>,
}

fn start_sshd(dir: &Path, name: &str, ca_pub: &Path) -> (Guard, u16, String) {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).expect("sshd dir");
    let host_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("host key");
    let host_key_file = dir.join("host_ed25519");
    write_private(&host_key_file, &host_key);
    let host_pub = host_key.public_key().to_openssh().expect("encode");
    std::fs::create_dir_all("/run/sshd").ok();
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\n\
             TrustedUserCAKeys {ca}\nAuthorizedKeysFile none\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPermitRootLogin prohibit-password\nAllowTcpForwarding yes\n\
             MaxStartups 100\nLogLevel ERROR\n",
            hk = host_key_file.display(),
            d = dir.display(),
            ca = ca_pub.display(),
        ),
    )
    .expect("write sshd_config");
    let log = std::fs::File::create(dir.join("sshd.log")).expect("sshd log");
    let child = Command::new(require("sshd"))
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sshd");
    let guard = Guard::new(child);
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(20),
        name,
    );
    (guard, port, host_pub)
}

fn setup(echo: SocketAddr) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let login = login_name();
    let mut rng = rand::rng();
    let ca = PrivateKey::random(&mut rng, Algorithm::Ed25519).expect("CA key");
    let ca_pub = dir.path().join("ca.pub");
    std::fs::write(&ca_pub, ca.public_key().to_openssh().expect("encode")).expect("ca.pub");
    let user_key = PrivateKey::random(&mut rng, Algorithm::Ed25519).expect("user key");
    write_private(&dir.path().join("id_user"), &user_key);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut b = Builder::new_with_random_nonce(
        &mut rng,
        user_key.public_key().key_data().clone(),
        now - 60,
        now + 4 * 3600,
    )
    .expect("builder");
    b.serial(4242).expect("serial");
    b.cert_type(CertType::User).expect("type");
    b.key_id(format!("tpa:request={REQUEST}:user=bench"))
        .expect("key id");
    b.valid_principal(login.as_str()).expect("principal");
    // OpenSSH's jump sshd needs this to forward; tpa-bastion ignores it.
    b.extension("permit-port-forwarding", "").expect("ext");
    b.extension(
        "tpa-request@tpa",
        format!("request={REQUEST};hosts=target,echo"),
    )
    .expect("ext");
    let cert = b.sign(&ca).expect("sign");
    std::fs::write(
        dir.path().join("id_user-cert.pub"),
        cert.to_openssh().expect("encode cert"),
    )
    .expect("write cert");

    let (target, target_port, target_pub) = start_sshd(dir.path(), "target", &ca_pub);
    let (jump, jump_port, jump_pub) = start_sshd(dir.path(), "jump", &ca_pub);

    let bastion_dir = dir.path().join("bastion");
    std::fs::create_dir_all(&bastion_dir).expect("bastion dir");
    let bastion_port = free_port();
    std::fs::write(
        bastion_dir.join("bastion.toml"),
        format!(
            "listen = \"127.0.0.1:{bastion_port}\"\nhost_key_file = \"host_ed25519\"\n\
             trusted_user_ca_keys = \"{ca}\"\ninsecure_without_ca_feed = true\n[limits]\nmax_connections = 5000\n\
             [hosts]\ntarget = \"127.0.0.1:{target_port}\"\necho = \"{echo}\"\n",
            ca = ca_pub.display(),
        ),
    )
    .expect("bastion.toml");
    let log = std::fs::File::create(bastion_dir.join("bastion.log")).expect("bastion log");
    let child = Command::new(env!("CARGO_BIN_EXE_tpa-bastion"))
        .arg("serve")
        .arg("--config")
        .arg(bastion_dir.join("bastion.toml"))
        .env("TPA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn tpa-bastion");
    let bastion_pid = child.id();
    let bastion = Guard::new(child);
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], bastion_port)),
        Duration::from_secs(20),
        "tpa-bastion",
    );
    let bastion_pub_text =
        std::fs::read_to_string(bastion_dir.join("host_ed25519.pub")).expect("bastion pub");
    let bastion_host_key = PublicKey::from_openssh(bastion_pub_text.trim()).expect("parse pub");

    std::fs::write(
        dir.path().join("known_hosts"),
        format!(
            "target {target_pub}\n[127.0.0.1]:{bastion_port} {bastion_pub_text}\n\
             [127.0.0.1]:{jump_port} {jump_pub}\n"
        ),
    )
    .expect("known_hosts");
    std::fs::write(
        dir.path().join("ssh_config"),
        format!(
            "Host tpa-bastion\n  HostName 127.0.0.1\n  Port {bastion_port}\n\n\
             Host openssh-jump\n  HostName 127.0.0.1\n  Port {jump_port}\n\n\
             Host via-tpa\n  HostName target\n  Port 22\n  HostKeyAlias target\n  ProxyJump tpa-bastion\n\n\
             Host via-openssh\n  HostName 127.0.0.1\n  Port {target_port}\n  HostKeyAlias target\n  ProxyJump openssh-jump\n\n\
             Host *\n  User {login}\n  IdentityFile {d}/id_user\n  CertificateFile {d}/id_user-cert.pub\n\
             \x20 IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile {d}/known_hosts\n\
             \x20 StrictHostKeyChecking yes\n  BatchMode yes\n  Ciphers {CIPHER}\n  Compression no\n\
             \x20 ConnectTimeout 10\n  LogLevel ERROR\n",
            d = dir.path().display(),
        ),
    )
    .expect("ssh_config");
    Setup {
        dir,
        login,
        user_key,
        cert,
        bastion_addr: SocketAddr::from(([127, 0, 0, 1], bastion_port)),
        bastion_host_key,
        bastion_pid,
        _processes: vec![bastion, jump, target],
    }
}

/// Runs `ssh HOST head -c BYTES /dev/zero` and returns MB/s (10^6 bytes).
fn transfer(setup: &Setup, host: &str, bytes: u64) -> f64 {
    let started = Instant::now();
    let mut child = Guard::new(
        Command::new(require("ssh"))
            .arg("-F")
            .arg(setup.dir.path().join("ssh_config"))
            .args([host, &format!("head -c {bytes} /dev/zero")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssh"),
    );
    let mut stdout = child.child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) => panic!("reading ssh output: {e}"),
        }
    }
    let elapsed = started.elapsed();
    let status = child.child.wait().expect("wait ssh");
    if got != bytes || !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let log = std::fs::read_to_string(setup.dir.path().join("bastion/bastion.log"))
            .unwrap_or_default();
        panic!("ssh {host}: got {got} of {bytes} bytes, {status}: {err}\ntpa-bastion log:\n{log}");
    }
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

/// Runs `ssh HOST 'cat > /dev/null'` fed BYTES zeros and returns MB/s.
fn upload(setup: &Setup, host: &str, bytes: u64) -> f64 {
    use std::io::Write as _;
    let started = Instant::now();
    let mut child = Guard::new(
        Command::new(require("ssh"))
            .arg("-F")
            .arg(setup.dir.path().join("ssh_config"))
            .args([host, "cat > /dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ssh"),
    );
    let mut stdin = child.child.stdin.take().expect("stdin");
    let buf = vec![0u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stdin
            .write_all(buf.get(..n).unwrap_or_default())
            .expect("write to ssh");
        left -= n as u64;
    }
    drop(stdin);
    let status = child.child.wait().expect("wait ssh");
    let elapsed = started.elapsed();
    assert!(status.success(), "ssh {host} upload: {status}");
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn throughput(setup: &Setup) {
    let bytes = env_u64("TPA_BENCH_BYTES", 1 << 30);
    let rounds = env_u64("TPA_BENCH_ROUNDS", 3).clamp(1, 20);
    // Warm-up: both paths once with a small transfer (host keys, page cache).
    transfer(setup, "via-openssh", 1 << 20);
    transfer(setup, "via-tpa", 1 << 20);
    let (mut openssh, mut tpa) = (Vec::new(), Vec::new());
    let (mut openssh_up, mut tpa_up) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let o = transfer(setup, "via-openssh", bytes);
        let t = transfer(setup, "via-tpa", bytes);
        let ou = upload(setup, "via-openssh", bytes);
        let tu = upload(setup, "via-tpa", bytes);
        println!(
            "  round {round}: download openssh jump {o:.1} MB/s, tpa-bastion {t:.1} MB/s; upload openssh jump {ou:.1} MB/s, tpa-bastion {tu:.1} MB/s"
        );
        openssh.push(o);
        tpa.push(t);
        openssh_up.push(ou);
        tpa_up.push(tu);
    }
    for (direction, o, t) in [
        ("download", median(openssh), median(tpa)),
        ("upload", median(openssh_up), median(tpa_up)),
    ] {
        println!(
            "throughput {direction} ({} MiB, cipher {CIPHER}, median of {rounds}): openssh jump {o:.1} MB/s, tpa-bastion {t:.1} MB/s, ratio {:.3} (target >= 0.9)",
            bytes >> 20,
            t / o
        );
    }
}

/// A russh client that accepts exactly the bastion's host key.
struct BenchClient(PublicKey);

impl client::Handler for BenchClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(matches!(key, PublicKeyOrCertificate::PublicKey { key, .. }
            if key.key_data() == self.0.key_data()))
    }
}

/// Connects, authenticates, opens a forward to `echo` and checks one round trip.
async fn open_session(
    setup: &Arc<Shared>,
) -> Result<(client::Handle<BenchClient>, russh::Channel<client::Msg>), String> {
    let mut session = client::connect(
        setup.config.clone(),
        setup.addr,
        BenchClient(setup.host_key.clone()),
    )
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let ok = session
        .authenticate_openssh_cert(&setup.login, setup.key.clone(), setup.cert.clone())
        .await
        .map_err(|e| format!("auth: {e}"))?
        .success();
    if !ok {
        return Err("certificate refused".to_owned());
    }
    let mut channel = session
        .channel_open_direct_tcpip("echo", 22, "127.0.0.1", 40000)
        .await
        .map_err(|e| format!("direct-tcpip: {e}"))?;
    channel
        .data(&b"x"[..])
        .await
        .map_err(|e| format!("send: {e}"))?;
    loop {
        match channel.wait().await {
            Some(russh::ChannelMsg::Data { .. }) => break,
            Some(_) => {}
            None => return Err("channel closed before the echo".to_owned()),
        }
    }
    Ok((session, channel))
}

/// What the russh clients share.
struct Shared {
    config: Arc<client::Config>,
    addr: SocketAddr,
    host_key: PublicKey,
    login: String,
    key: Arc<PrivateKey>,
    cert: Certificate,
}

fn shared(setup: &Setup) -> Arc<Shared> {
    Arc::new(Shared {
        config: Arc::new(client::Config::default()),
        addr: setup.bastion_addr,
        host_key: setup.bastion_host_key.clone(),
        login: setup.login.clone(),
        key: Arc::new(setup.user_key.clone()),
        cert: setup.cert.clone(),
    })
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

async fn memory(setup: &Setup) {
    let n = env_u64("TPA_BENCH_IDLE", 1000);
    let before = rss_kib(setup.bastion_pid);
    let s = shared(setup);
    let opened = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let started = Instant::now();
    for _ in 0..n {
        let s = s.clone();
        let gate = gate.clone();
        let opened = opened.clone();
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore");
            let session = tokio::time::timeout(Duration::from_secs(60), open_session(&s)).await;
            drop(permit);
            let session = match session {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => panic!("idle session: {e}"),
                Err(_) => panic!("idle session: timed out"),
            };
            opened.fetch_add(1, Ordering::Relaxed);
            session
        });
    }
    let mut sessions = Vec::new();
    while let Some(done) = tasks.join_next().await {
        sessions.push(done.expect("session task"));
    }
    let open_time = started.elapsed();
    // Let allocations settle, then read the resident size twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rss_kib(setup.bastion_pid).max({
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_kib(setup.bastion_pid)
    });
    println!(
        "memory: {} idle forwarded sessions (opened in {:.1} s): tpa-bastion VmRSS {:.1} MB (before {:.1} MB, {:.1} KiB per session; target < 200 MB)",
        opened.load(Ordering::Relaxed),
        open_time.as_secs_f64(),
        during as f64 / 1024.0,
        before as f64 / 1024.0,
        (during.saturating_sub(before)) as f64 / n.max(1) as f64,
    );
    for (session, channel) in sessions {
        let _ = channel.close().await;
        let _ = session
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
    }
}

async fn rate(setup: &Setup) {
    let secs = env_u64("TPA_BENCH_SECS", 5).clamp(1, 600);
    let concurrency = env_u64("TPA_BENCH_CONCURRENCY", 16).clamp(1, 512);
    let s = shared(setup);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (s, done, failed) = (s.clone(), done.clone(), failed.clone());
        workers.spawn(async move {
            while tokio::time::Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_secs(30), open_session(&s)).await {
                    Ok(Ok((session, channel))) => {
                        let _ = channel.close().await;
                        let _ = session
                            .disconnect(russh::Disconnect::ByApplication, "", "")
                            .await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("session failed: {e}");
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "session rate: {n} forwarded sessions in {elapsed:.1} s with {concurrency} clients: {:.0} sessions/s ({} failed; target >= 300/s)",
        n as f64 / elapsed,
        failed.load(Ordering::Relaxed)
    );
}

/// Times `ssh via-tpa true` (an `ssh -J` login through tpa-bastion); the
/// error when it fails.
fn try_login(setup: &Setup) -> Result<Duration, String> {
    let started = Instant::now();
    let out = Command::new(require("ssh"))
        .arg("-F")
        .arg(setup.dir.path().join("ssh_config"))
        .args(["via-tpa", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh");
    let took = started.elapsed();
    if out.status.success() {
        Ok(took)
    } else {
        Err(format!(
            "after {took:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Like [`try_login`]; a failure ends the benchmark.
fn timed_login(setup: &Setup) -> Duration {
    try_login(setup).unwrap_or_else(|e| panic!("ssh -J login failed {e}"))
}

/// Holds `n` idle connections to `addr` from `sources` until `stop`,
/// reopening each one the bastion closes; counts open ones and reopenings.
async fn hold_flood(
    addr: SocketAddr,
    sources: Vec<std::net::Ipv4Addr>,
    n: usize,
    open: Arc<AtomicU64>,
    reopened: Arc<AtomicU64>,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let source = sources.get(i % sources.len().max(1)).copied();
        let (open, reopened) = (open.clone(), reopened.clone());
        tasks.spawn(async move {
            let mut first = true;
            loop {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                if let Some(ip) = source {
                    let _ = socket.bind(SocketAddr::from((ip, 0)));
                }
                if let Ok(mut stream) = socket.connect(addr).await {
                    if !first {
                        reopened.fetch_add(1, Ordering::Relaxed);
                    }
                    first = false;
                    if i % 2 == 1 {
                        let _ = stream.write_all(b"SSH-2.0-slow").await;
                    }
                    open.fetch_add(1, Ordering::Relaxed);
                    let mut sink = [0u8; 512];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::Relaxed);
                }
                // Each connection is reopened 250 ms after the bastion drops
                // it: up to 4,000 new connections a second, as in the e2e test.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }
    stop.notified().await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 and max of login times, in ms.
fn summary(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let p50 = times.get(times.len() / 2).copied().unwrap_or_default();
    let max = times.last().copied().unwrap_or_default();
    (millis(p50), millis(max))
}

fn flood(setup: &Setup, runtime: &tokio::runtime::Runtime) {
    let n = env_u64("TPA_BENCH_FLOOD", 1000) as usize;
    let logins = env_u64("TPA_BENCH_LOGINS", 10).clamp(1, 1000);
    timed_login(setup); // warm-up
    let quiet: Vec<Duration> = (0..logins).map(|_| timed_login(setup)).collect();
    let (p50, max) = summary(quiet);
    println!(
        "flood: ssh -J time-to-login without a flood: p50 {p50:.0} ms, max {max:.0} ms ({logins} logins)"
    );
    let one = vec![std::net::Ipv4Addr::new(127, 0, 0, 1)];
    let fifty: Vec<_> = (1..=50)
        .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i))
        .collect();
    for (label, sources) in [("1 address", one), ("50 addresses", fifty)] {
        let open = Arc::new(AtomicU64::new(0));
        let reopened = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(tokio::sync::Notify::new());
        let flood = runtime.spawn(hold_flood(
            setup.bastion_addr,
            sources,
            n,
            open.clone(),
            reopened.clone(),
            stop.clone(),
        ));
        std::thread::sleep(Duration::from_secs(3));
        let (mut times, mut failed) = (Vec::new(), 0);
        for _ in 0..logins {
            match try_login(setup) {
                Ok(took) => times.push(took),
                Err(e) => {
                    if failed == 0 {
                        eprintln!("login under the flood failed {e}");
                    }
                    failed += 1;
                }
            }
        }
        let (p50, max) = summary(times);
        println!(
            "flood: ssh -J time-to-login with {n} idle connections from {label}: p50 {p50:.0} ms, max {max:.0} ms ({logins} logins, {failed} failed; {} flood connections open at the end, {} reopened after the bastion dropped them)",
            open.load(Ordering::Relaxed),
            reopened.load(Ordering::Relaxed)
        );
        stop.notify_one();
        let _ = runtime.block_on(flood);
    }
}

/// A TCP echo server on 127.0.0.1:0 for the memory and rate parts.
async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if socket
                                .write_all(buf.get(..n).unwrap_or_default())
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let parts =
        std::env::var("TPA_BENCH_PARTS").unwrap_or_else(|_| "throughput,memory,rate,flood".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let echo = runtime.block_on(echo_server());
    let setup = setup(echo);
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "tpa-bastion benchmarks: {cpus} CPUs, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for part in parts.split(',').map(str::trim) {
        match part {
            "throughput" => throughput(&setup),
            "memory" => runtime.block_on(memory(&setup)),
            "rate" => runtime.block_on(rate(&setup)),
            "flood" => flood(&setup, &runtime),
            other => {
                eprintln!("unknown part {other:?}: use throughput, memory, rate, flood");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
