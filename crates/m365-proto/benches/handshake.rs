//! The cost of the Mi-auth cryptography on the client: a full login computation and the
//! registration crypto. Run with `cargo bench -p m365-proto --bench handshake`.
// A benchmark: its inputs are fixed and known good, so a failing `unwrap`/`expect` is a bug in
// the benchmark; `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use m365_proto::crypto::{KeyPair, LoginRandoms, RegistrationKeys};
use m365_proto::keys::Token;

fn login(c: &mut Criterion) {
    let token = Token([0x0C; 12]);
    let randoms = LoginRandoms {
        app: [0xA8; 16],
        dev: [0x90; 16],
    };
    // The device's proof as the client receives it.
    let dev_proof = randoms.device_proof(&randoms.session_keys(&token));
    c.bench_function("login: HKDF + verify device proof + app proof", |b| {
        b.iter(|| {
            let randoms = black_box(randoms);
            let keys = randoms.session_keys(black_box(&token));
            assert!(randoms.verify_device_proof(&keys, black_box(&dev_proof)));
            black_box(randoms.app_proof(&keys))
        })
    });
}

fn registration(c: &mut Criterion) {
    let client = KeyPair::from_private_bytes(&[0x6B; 32]).expect("valid scalar");
    let device = KeyPair::from_private_bytes(&[0x2A; 32]).expect("valid scalar");
    let did = *b"\0blt.4.18n58266kgg00";
    c.bench_function("registration: ECDH + HKDF + DID encryption", |b| {
        b.iter(|| {
            let secret = client.shared_secret(black_box(device.public_key()));
            let keys = RegistrationKeys::derive(&secret);
            black_box(keys.encrypt_did(black_box(&did)))
        })
    });
    let mut seed = 0u64;
    c.bench_function("registration: P-256 key pair generation", |b| {
        b.iter(|| {
            seed = seed.wrapping_add(1);
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            black_box(KeyPair::generate(&mut rng).public_key().to_wire())
        })
    });
}

criterion_group!(benches, login, registration);
criterion_main!(benches);
