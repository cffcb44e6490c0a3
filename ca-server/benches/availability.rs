//! `cargo bench -p ca-server --bench availability`: p50/p99 of `GET /healthz`
//! and of a certificate call (`POST /api/v1/requests/{id}/certificate`), first
//! with no other connection, then while 1,000 idle HTTP connections are held
//! (100 from each of 127.0.0.2 … 127.0.0.11), in the same run (issue 13).
//!
//! Everything runs in this process on 127.0.0.1: a fresh data directory made
//! by `init_data_dir` under `$TMPDIR` with the brief's roles, the real
//! `Application` on port 0 with its default limits, and one keep-alive
//! HTTP/1.1 client issuing calls one after another. Bounded:
//! `TPA_BENCH_SAMPLES` calls of each kind per phase (default 300).

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use ca_server::commands::{InitOptions, init_data_dir};
use ca_server::config::{Config, EXAMPLE_ROLES};
use ca_server::server::Application;
use serde_json::{Value, json};
use ssh_key::{Algorithm, PrivateKey};
use support::{Client, Response};
use tokio::net::TcpSocket;

const PASSWORD: &str = "bench password, long enough";

/// p50 and p99 of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort_unstable();
    let at = |p: f64| {
        let i = ((samples.len().saturating_sub(1)) as f64 * p).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    (at(0.50), at(0.99))
}

/// Measures `samples` calls of /healthz and of the certificate call.
async fn measure(
    client: &mut Client,
    token: &str,
    request: &str,
    keys: &[String],
) -> anyhow::Result<[(f64, f64); 2]> {
    let mut health = Vec::with_capacity(keys.len());
    let mut certs = Vec::with_capacity(keys.len());
    let path = format!("/api/v1/requests/{request}/certificate");
    for key in keys {
        let start = Instant::now();
        let Response { status, body } = client.send("GET", "/healthz", None, None).await?;
        health.push(start.elapsed());
        ensure!(
            status == 200,
            "/healthz answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let body = json!({ "public_key": key }).to_string();
        let start = Instant::now();
        let Response {
            status,
            body: answer,
        } = client.send("POST", &path, Some(token), Some(&body)).await?;
        certs.push(start.elapsed());
        ensure!(
            status == 200,
            "certificate answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok([percentiles(health), percentiles(certs)])
}

async fn run() -> anyhow::Result<()> {
    let samples: usize = std::env::var("TPA_BENCH_SAMPLES")
        .ok()
        .map(|s| s.parse())
        .transpose()
        .context("TPA_BENCH_SAMPLES")?
        .unwrap_or(300);
    let tmp = tempfile::tempdir()?;
    let config_path = init_data_dir(&InitOptions {
        data_dir: tmp.path().join("ca"),
        passphrase_file: None,
        listen: "127.0.0.1:0".parse()?,
    })?;
    let hash = ca_server::auth::identity::hash_password(PASSWORD)?;
    let text = std::fs::read_to_string(&config_path)?;
    std::fs::write(
        &config_path,
        format!(
            "{text}\n{EXAMPLE_ROLES}\n[[accounts]]\nusername = \"alice\"\npassword_hash = \"{hash}\"\ngroups = [\"engineers\"]\n"
        ),
    )?;
    let config = Config::load(&config_path)?;
    let app = Application::build(&config, Some("127.0.0.1:0".parse()?)).await?;
    let address = app.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let mut client = Client::connect(address).await?;
    let login = json!({ "username": "alice", "password": PASSWORD }).to_string();
    let Response { status, body } = client
        .send("POST", "/api/v1/login", None, Some(&login))
        .await?;
    ensure!(status == 200, "login answered {status}");
    let token = serde_json::from_slice::<Value>(&body)?["token"]
        .as_str()
        .context("no token")?
        .to_owned();
    let submit =
        json!({"role": "read-only-debug", "hosts": ["web-1"], "duration": "1h", "reason": "bench"});
    let Response { status, body } = client
        .send(
            "POST",
            "/api/v1/requests",
            Some(&token),
            Some(&submit.to_string()),
        )
        .await?;
    ensure!(status == 201, "submit answered {status}");
    let request = serde_json::from_slice::<Value>(&body)?["request"]["id"]
        .as_str()
        .context("no request id")?
        .to_owned();
    let keys: Vec<String> = (0..samples * 2)
        .map(|_| -> anyhow::Result<String> {
            Ok(PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)?
                .public_key()
                .to_openssh()?)
        })
        .collect::<Result<_, _>>()?;
    let (quiet_keys, flood_keys) = keys.split_at(samples);

    let quiet = measure(&mut client, &token, &request, quiet_keys).await?;
    let mut idle = Vec::with_capacity(1000);
    for host in 2..=11u8 {
        for _ in 0..100 {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::from([127, 0, 0, host]), 0))?;
            idle.push(socket.connect(address).await?);
        }
    }
    let flooded = measure(&mut client, &token, &request, flood_keys).await?;
    let held = idle.len();
    drop(idle);

    println!(
        "availability under an idle-connection flood ({samples} calls of each kind per phase, one client, sequential)"
    );
    println!("{:<44} {:>10} {:>10}", "", "p50", "p99");
    for (name, [health, cert]) in [
        ("no other connection", quiet),
        ("1,000 idle connections held", flooded),
    ] {
        println!(
            "{:<44} {:>7.2} ms {:>7.2} ms",
            format!("GET /healthz, {name}"),
            health.0,
            health.1
        );
        println!(
            "{:<44} {:>7.2} ms {:>7.2} ms",
            format!("certificate call, {name}"),
            cert.0,
            cert.1
        );
    }
    println!("idle connections held during the second phase: {held}");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
