//! `cargo bench -p ca-server --bench http_issuance`: certificate issuance
//! through the HTTP API with 64 concurrent keep-alive clients, against raw
//! signing measured in the same run, and the latency from an approver's final
//! decision to the answer of a client waiting on `GET /api/v1/requests/{id}/wait`.
//!
//! Everything runs in this process on 127.0.0.1: a fresh data directory made
//! by `init_data_dir` under `$TMPDIR` with the brief's roles (`EXAMPLE_ROLES`)
//! and three accounts, the real `Application` on port 0 (SQLite, WAL,
//! `synchronous=FULL`), and small hand-written HTTP/1.1 clients. Bounded:
//! issuance runs for `TPA_BENCH_SECS` seconds (default 10) after a 1 s
//! warm-up, decision latency for `TPA_BENCH_ROUNDS` rounds (default 25: each
//! approver decides once a round, and decisions are limited to 30 per user per
//! minute).
//! `TPA_BENCH_CLIENTS` changes the number of clients (default 64).

mod support;

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ca_server::commands::{InitOptions, init_data_dir, verify_database};
use ca_server::config::Config;
use ca_server::server::Application;
use ca_server::signer::Signer;
use ca_server::store::{self, Create};
use support::{
    Tokens, add_roles_and_accounts, decision_latency, env_number, http_issuance, ms, raw_signing,
};

/// Runs the server and both measurements; returns how many certificates were answered.
async fn run(config: &Config, signing_rate: f64) -> anyhow::Result<usize> {
    let clients = env_number("TPA_BENCH_CLIENTS", 64)?;
    let secs = env_number("TPA_BENCH_SECS", 10)?;
    let rounds = env_number("TPA_BENCH_ROUNDS", 25)?;
    let app = Application::build(config, Some("127.0.0.1:0".parse()?)).await?;
    let address = app.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let outcome = async {
        let tokens = Tokens::login(address).await?;
        let (rate, latencies, answered) =
            http_issuance(&[address], &tokens, clients, Duration::from_secs(secs)).await?;
        println!(
            "HTTP issuance, {clients} clients, {secs} s: {rate:.0} certs/s  (p50 {}, p99 {}, max {})",
            ms(latencies.percentile(0.50)),
            ms(latencies.percentile(0.99)),
            ms(latencies.percentile(1.0)),
        );
        println!("raw signing (Signer::sign, one thread, same run): {signing_rate:.0} certs/s");
        println!("ratio HTTP issuance / raw signing: {:.3}", rate / signing_rate);
        let (after_answer, after_start) = decision_latency(address, address, &tokens, rounds).await?;
        println!(
            "decision → waiting client, {rounds} rounds: from the final approval's answer p50 {}, p99 {}; from its POST p50 {}, p99 {}",
            ms(after_answer.percentile(0.50)),
            ms(after_answer.percentile(0.99)),
            ms(after_start.percentile(0.50)),
            ms(after_start.percentile(0.99)),
        );
        anyhow::Ok(answered)
    }
    .await;
    let _ = stop.send(());
    // A failed run says why before anything else.
    let answered = outcome?;
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .context("the server did not stop within 10 s")???;
    Ok(answered)
}

fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let config_path = init_data_dir(&InitOptions {
        data_dir: tmp.path().join("ca"),
        passphrase_file: None,
        listen: "127.0.0.1:0".parse()?,
    })?;
    add_roles_and_accounts(&config_path)?;
    let config = Config::load(&config_path)?;
    println!(
        "HTTP issuance benchmark: in-process server on 127.0.0.1, database {} (WAL, synchronous=FULL), {} CPUs",
        config.database_path.display(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );

    let signer = Signer::load(&config.ca)?;
    let signing_rate = raw_signing(&signer, Duration::from_secs(2))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let answered = runtime.block_on(run(&config, signing_rate))?;
    drop(runtime);

    // Every answered certificate has its row, and the audit chain verifies.
    let conn = store::open(&config.database_path, Create::Never)?;
    let rows = usize::try_from(store::certificates::count(&conn)?)?;
    ensure!(
        rows == answered,
        "{answered} certificates answered but {rows} certificate rows"
    );
    match verify_database(&conn)? {
        Ok(report) => println!(
            "audit chain verified: {} events, {rows} certificate rows",
            report.events
        ),
        Err(broken) => bail!("audit chain broken: {broken}"),
    }
    Ok(())
}
