//! Load and crash-test driver for the pipeline: feeds synthetic samples through a real spool to
//! a real broker, prints progress, and exits once everything is acknowledged. The kill/restart
//! test runs it as a child process; the drain benchmark uses it to measure throughput.
//!
//! Usage: `m365-pipeline-load --broker URL --spool PATH [--count N] [--interval-ms MS]
//!         [--topic T] [--encoding legacy|json|compact] [--sync always|normal]
//!         [--drain-timeout-s S] [--scooter ID] [--protocol 5|3.1.1]`
//!
//! Output lines: `progress sampled=… spooled=… acknowledged=… spool_records=… broker=…` every
//! 100 ms, then `done …` (exit 0) or `timeout …` (exit 2).

#![forbid(unsafe_code)]

use std::time::Duration;

use anyhow::{Context, bail};
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{
    Encoding, MqttConfig, MqttProtocol, OutputConfig, PipelineConfig, SpoolConfig, SyncPolicy,
};

struct Args {
    broker: String,
    spool: String,
    count: u64,
    interval: Duration,
    topic: String,
    encoding: Encoding,
    sync: SyncPolicy,
    drain_timeout: Duration,
    scooter: String,
    protocol: MqttProtocol,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        broker: String::new(),
        spool: String::new(),
        count: 100,
        interval: Duration::from_millis(10),
        topic: "m365/{scooter_id}/telemetry".into(),
        encoding: Encoding::Json,
        sync: SyncPolicy::Normal,
        drain_timeout: Duration::from_secs(30),
        scooter: "load-1".into(),
        protocol: MqttProtocol::V5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--broker" => a.broker = value()?,
            "--spool" => a.spool = value()?,
            "--count" => a.count = value()?.parse().context("--count")?,
            "--interval-ms" => {
                a.interval = Duration::from_millis(value()?.parse().context("--interval-ms")?)
            }
            "--topic" => a.topic = value()?,
            "--encoding" => {
                a.encoding = serde_json::from_value(serde_json::Value::String(value()?))
                    .context("--encoding")?
            }
            "--sync" => a.sync = value()?.parse().context("--sync")?,
            "--drain-timeout-s" => {
                a.drain_timeout =
                    Duration::from_secs(value()?.parse().context("--drain-timeout-s")?)
            }
            "--scooter" => a.scooter = value()?,
            "--protocol" => a.protocol = value()?.parse().context("--protocol")?,
            other => bail!("unknown argument {other}"),
        }
    }
    if a.broker.is_empty() || a.spool.is_empty() {
        bail!("--broker and --spool are required");
    }
    Ok(a)
}

fn line(tag: &str, h: &m365_pipeline::HealthSnapshot) -> String {
    format!(
        "{tag} sampled={} spooled={} published={} acknowledged={} spool_records={} dropped={} broker={:?}",
        h.sampled,
        h.spooled,
        h.published,
        h.acknowledged,
        h.spool_records,
        h.dropped_spool,
        h.broker
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let cfg = PipelineConfig {
        spool: SpoolConfig {
            path: args.spool.clone().into(),
            sync: args.sync,
            ..SpoolConfig::default()
        },
        mqtt: MqttConfig {
            broker: args.broker.clone(),
            protocol: args.protocol,
            client: format!("m365-load-{}", args.scooter),
            reconnect_min: 0.2,
            reconnect_max: 1.0,
            max_in_flight: 64,
            live_reserved: 8,
            outputs: vec![OutputConfig {
                topic: args.topic.clone(),
                encoding: args.encoding,
                batch: None,
                linger_ms: Some(200),
                legacy_no_fix: Default::default(),
            }],
            ..MqttConfig::default()
        },
        channel_capacity: 1024,
    };
    let (handle, _task) =
        m365_pipeline::spawn(cfg, &args.scooter).context("starting the pipeline")?;
    let progress = {
        let handle = handle.clone();
        tokio::spawn(async move {
            loop {
                println!("{}", line("progress", &handle.health()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut scooter = SyntheticScooter::new(
        &args.scooter,
        42,
        chrono::Utc::now(),
        args.interval.max(Duration::from_millis(1)),
    );
    let mut tick = tokio::time::interval(args.interval.max(Duration::from_micros(100)));
    for _ in 0..args.count {
        tick.tick().await;
        handle
            .submit(scooter.next_sample())
            .await
            .context("pipeline stopped")?;
    }
    let deadline = tokio::time::Instant::now() + args.drain_timeout;
    loop {
        let h = handle.health();
        if h.spooled >= args.count && h.spool_records == 0 {
            progress.abort();
            println!("{}", line("done", &h));
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            progress.abort();
            println!("{}", line("timeout", &h));
            std::process::exit(2);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
