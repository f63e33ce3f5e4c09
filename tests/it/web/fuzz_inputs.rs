//! The fuzz targets' functions (`nas_sync::fuzzing`, driven by cargo-fuzz in `fuzz/`
//! on nightly) fed random and mutated inputs on the stable toolchain, in the normal
//! suite: cursor decoding and push validation never panic. Mutations start from the
//! fuzz seeds (`fuzz/seeds/`) and JSON fragments that reached past bugs; the run is
//! reproducible (`FUZZ_SEED`, printed on failure) and `FUZZ_ITERATIONS` runs longer.

use std::panic::{AssertUnwindSafe, catch_unwind};

use nas_sync::fuzzing;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that make JSON and cursors interesting.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "null",
    "true",
    "false",
    "0",
    "-0",
    "1e400",
    "-1e400",
    "1.5e-400",
    "9223372036854775808",
    "-9223372036854775809",
    "0.000000000000000000000001",
    "\"id\"",
    "\"version\"",
    "\"updated_at\"",
    "\"deleted\"",
    "\"tenant_id\"",
    "\"changes\"",
    "\"push_id\"",
    "\"fuzzed\"",
    "\"amount\"",
    "\"position\"",
    "\"seen_at\"",
    "\"payload\"",
    "\"2026-02-30T25:61:61Z\"",
    "\"+275760-09-13T00:00:00Z\"",
    "\"-262143-01-01T00:00:00Z\"",
    "\"0b6f8a44-1d8e-4f0e-9c47-2f0c1f3e6a11\"",
    "\"NaN\"",
    "\"  12.50  \"",
    "\"-.\"",
    "\".5\"",
    "\"1.\"",
    "é",
    "\u{10FFFF}",
    "=",
    "-",
    "_",
    "AQ",
];

fn seeds() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds");
    let mut out = vec![Vec::new()];
    for target in ["cursor_decode", "push_validate"] {
        for entry in std::fs::read_dir(format!("{dir}/{target}")).expect("fuzz seeds") {
            out.push(std::fs::read(entry.expect("seed").path()).expect("read seed"));
        }
    }
    out
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let end = (at + rng.below(16)).min(input.len());
                input.drain(at.min(end)..end);
            }
            2 => input.insert(at, (rng.next() & 0xff) as u8),
            3 if !input.is_empty() => {
                let from = rng.below(input.len());
                let end = (from + rng.below(64)).min(input.len());
                let chunk = input[from..end].to_vec();
                input.splice(at..at, chunk);
            }
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                input.splice(at..at, token.iter().copied());
            }
        }
    }
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    let iterations: usize = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    for i in 0..iterations {
        let input = if rng.below(8) == 0 {
            (0..rng.below(128))
                .map(|_| (rng.next() & 0xff) as u8)
                .collect()
        } else {
            let mut input = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &mut input);
            input
        };
        for (name, target) in [
            ("cursor_decode", fuzzing::cursor_decode as fn(&[u8])),
            ("push_validate", fuzzing::push_validate as fn(&[u8])),
        ] {
            if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
                panic!(
                    "{name} panicked on iteration {i} (FUZZ_SEED={seed}) with input {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
    }
}
