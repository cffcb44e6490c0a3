//! `cargo bench -p ca-server --bench issuance`: Ed25519 certificates per second
//! for (a) signing alone and (b) the full admin issuance path in-process
//! (parse and check the input, `BEGIN IMMEDIATE`, serial, sign, audit row,
//! certificate row, commit with `synchronous=FULL`), and their ratio.
//!
//! Single thread, bounded: each part runs for `TPA_BENCH_SECS` seconds
//! (default 3) or 1,000,000 iterations, after a short warm-up. The database is
//! a fresh data directory made by `init_data_dir` under `$TMPDIR`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ca_server::commands::{InitOptions, init_data_dir};
use ca_server::config::Config;
use ca_server::signer::Signer;
use ca_server::store::{self, Create};
use ca_server::workflow::{AdminIssueInput, admin_issue};
use chrono::Utc;
use rand::RngExt as _;
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{Algorithm, PrivateKey};
use tpa_core::{
    ApprovedScope, CertOrigin, CertSerial, CertTemplate, CriticalOptions, Extension, HumanDuration,
    Principal, SubjectKey, Username,
};

const MAX_ITERATIONS: usize = 1_000_000;
const WARM_UP: usize = 20;

/// What one part measured.
struct Measurement {
    iterations: usize,
    elapsed: Duration,
    /// Per-iteration latencies, sorted.
    latencies: Vec<Duration>,
}

impl Measurement {
    fn per_second(&self) -> f64 {
        self.iterations as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[index]
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<48} {:>9.0} certs/s  ({} certs in {:.2} s; p50 {:?}, p99 {:?})",
            self.per_second(),
            self.iterations,
            self.elapsed.as_secs_f64(),
            self.percentile(0.50),
            self.percentile(0.99),
        );
    }
}

/// Runs `step` for `budget` (or [`MAX_ITERATIONS`]) after a warm-up.
fn measure(budget: Duration, mut step: impl FnMut()) -> Measurement {
    for _ in 0..WARM_UP {
        step();
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < budget && latencies.len() < MAX_ITERATIONS {
        let t = Instant::now();
        step();
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Measurement {
        iterations: latencies.len(),
        elapsed,
        latencies,
    }
}

fn main() -> anyhow::Result<()> {
    let secs: u64 = match std::env::var("TPA_BENCH_SECS") {
        Ok(v) => v.parse()?,
        Err(_) => 3,
    };
    let budget = Duration::from_secs(secs);

    let tmp = tempfile::tempdir()?;
    let config_path = init_data_dir(&InitOptions {
        data_dir: tmp.path().join("ca"),
        passphrase_file: None,
        listen: "127.0.0.1:0".parse()?,
    })?;
    let config = Config::load(&config_path)?;
    let signer = Signer::load(&config.ca)?;
    let mut conn = store::open(&config.database_path, Create::Never)?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    anyhow::ensure!(
        synchronous == 2,
        "expected synchronous=FULL (2), got {synchronous}"
    );

    let user = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
    let user_public = user.public_key().to_openssh()?;
    println!("issuance benchmark: Ed25519 CA key, Ed25519 user key, one thread");
    println!(
        "database {} (WAL, synchronous=FULL); {secs} s per part",
        config.database_path.display()
    );
    println!();

    // The physical anchor: ssh-key's certificate builder and Ed25519 signature,
    // with the same fields, bypassing TPA's template and signer.
    let raw_ca = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?;
    let raw_valid_after = u64::try_from(Utc::now().timestamp())? - 60;
    let raw = measure(budget, || {
        let nonce: [u8; 32] = rand::rng().random();
        let mut b = Builder::new(
            nonce,
            user.public_key().key_data().clone(),
            raw_valid_after,
            raw_valid_after + 660,
        )
        .expect("builder");
        b.serial(42).expect("serial");
        b.cert_type(CertType::User).expect("type");
        b.key_id("tpa:admin-issue:user=root").expect("key id");
        b.valid_principal("deploy").expect("principal");
        b.extension("permit-pty", "").expect("extension");
        std::hint::black_box(b.sign(&raw_ca).expect("signing failed"));
    });

    // (a) Signing alone: one fixed template, a fresh nonce and signature each time.
    let now = Utc::now();
    let scope = ApprovedScope {
        subject: SubjectKey::parse(&user_public, &signer.ca_key_data())?,
        origin: CertOrigin::AdminIssue {
            admin: Username::parse("root")?,
        },
        principals: BTreeSet::from([Principal::parse("deploy")?]),
        extensions: BTreeSet::from([Extension::PermitPty]),
        critical_options: CriticalOptions::default(),
        window_end: now + chrono::TimeDelta::minutes(10),
        cert_ttl: HumanDuration::parse("10m")?,
        hosts: BTreeSet::new(),
    };
    let template = CertTemplate::new(scope, CertSerial::new(42)?, now)?;
    let signing = measure(budget, || {
        let certificate = signer.sign(&template).expect("signing failed");
        std::hint::black_box(certificate);
    });

    // (b) The full admin issuance path, exactly as `tpa-ca issue` runs it.
    let admin = Username::parse("root")?;
    let input = AdminIssueInput {
        public_key: user_public,
        principals: vec!["deploy".to_owned()],
        ttl: "10m".to_owned(),
        reason: "issuance benchmark".to_owned(),
        extensions: vec!["permit-pty".to_owned()],
        force_command: None,
        source_address: None,
    };
    let full = measure(budget, || {
        let issued = admin_issue(
            &mut conn,
            &signer,
            &config.admin_issue,
            &admin,
            &input,
            Utc::now(),
        )
        .expect("issuance failed");
        std::hint::black_box(issued);
    });
    let issued = store::certificates::count(&conn)?;
    anyhow::ensure!(
        usize::try_from(issued)? == full.iterations + WARM_UP,
        "expected one certificate row per issuance, found {issued}"
    );

    raw.print("ssh-key builder + sign (anchor)");
    signing.print("(a) signing alone (Signer::sign)");
    full.print("(b) full admin issuance (workflow::admin_issue)");
    println!(
        "ratio (b)/(a): {:.3}  (signing alone is {:.0}x faster)",
        full.per_second() / signing.per_second(),
        signing.per_second() / full.per_second()
    );
    Ok(())
}
