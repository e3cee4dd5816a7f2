//! Speed of the UART path that runs once per telemetry poll: sealing a request, and turning a
//! full cycle of answers (motor info, battery, range) received as 20-byte notifications back
//! into typed values. Targets: under 5 µs per request, under 20 µs per cycle. Run with
//! `cargo bench -p m365-proto --bench uart`.
// A benchmark: its inputs are fixed and known good, so a failing `unwrap`/`expect` is a bug in
// the benchmark; `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use m365_proto::encrypted::UartCipher;
use m365_proto::frame::{DIR_BMS_REPLY, DIR_ESC_REPLY, Frame, RW_READ};
use m365_proto::gatt::ATT_PAYLOAD;
use m365_proto::keys::{Role, SessionKeys};
use m365_proto::model::Generation;
use m365_proto::reassembly::Reassembler;
use m365_proto::registers::battery::BatteryInfo;
use m365_proto::registers::esc;
use m365_proto::registers::motor_info::MotorInfo;

fn keys() -> SessionKeys {
    SessionKeys {
        dev_key: *b"device key 16 B!",
        app_key: *b"client key 16 B!",
        dev_iv: [1, 2, 3, 4],
        app_iv: [5, 6, 7, 8],
    }
}

/// The three answers of a telemetry cycle, sealed by the scooter and cut into notifications.
fn cycle_notifications() -> Vec<Vec<u8>> {
    let mut device = UartCipher::new(keys(), Role::Device);
    let answers = [
        Frame::new(DIR_ESC_REPLY, RW_READ, 0xB0, (0..32).collect()).unwrap(),
        Frame::new(DIR_BMS_REPLY, RW_READ, 0x31, (0..10).collect()).unwrap(),
        Frame::new(DIR_ESC_REPLY, RW_READ, 0x25, vec![0x32, 0x0A]).unwrap(),
    ];
    answers
        .iter()
        .flat_map(|f| {
            let wire = device.seal(f, [9, 8, 7, 6]);
            wire.chunks(ATT_PAYLOAD)
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut client = UartCipher::new(keys(), Role::Client);
    c.bench_function("seal motor-info request", |b| {
        b.iter(|| client.seal(black_box(&esc::read_motor_info()), black_box([1, 2, 3, 4])))
    });

    let notifications = cycle_notifications();
    c.bench_function("telemetry cycle: reassemble, open, decode", |b| {
        b.iter_batched(
            || {
                (
                    UartCipher::new(keys(), Role::Client),
                    Reassembler::new(Generation::MiAuth),
                )
            },
            |(mut cipher, mut reassembler)| {
                let mut decoded = 0;
                for n in &notifications {
                    reassembler.push(black_box(n));
                    while let Some(wire) = reassembler.next_frame() {
                        let frame = cipher.open(&wire).expect("bench frames are valid");
                        decoded += match frame.attr {
                            0xB0 => MotorInfo::decode(&frame).map(|m| m.uptime_s).is_ok(),
                            0x31 => BatteryInfo::decode(&frame).is_ok(),
                            _ => esc::decode_range_km(&frame).is_ok(),
                        } as u32;
                    }
                }
                assert_eq!(decoded, 3);
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
