//! A hostile PLC: a proxy between the cabinet's Modbus client and the simulator rewrites each
//! genuine reply (NaN registers, too few registers, inconsistent byte counts, unknown
//! exceptions, wrong function or transaction id, truncation, silence, random bytes, seeded
//! bit flips). Every read must fail with a typed error within its timeout, or succeed with
//! finite values only; never panic, never hang.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::TestSim;
use wattchain::modbus::{ModbusCabinet, ModbusError};
use wattchain::regmap::{Measurement, RegisterMap};

const TIMEOUT: Duration = Duration::from_millis(100);

/// What the hostile PLC does with one genuine reply frame (MBAP header + PDU): the bytes to
/// send instead, or `None` to stay silent.
type Rewrite = Arc<dyn Fn(Vec<u8>) -> Option<Vec<u8>> + Send + Sync>;

async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut frame = vec![0u8; 6];
    stream.read_exact(&mut frame).await.ok()?;
    let len = usize::from(u16::from_be_bytes([frame[4], frame[5]]));
    let mut rest = vec![0u8; len];
    stream.read_exact(&mut rest).await.ok()?;
    frame.extend_from_slice(&rest);
    Some(frame)
}

/// A proxy to the simulator that rewrites every reply; returns its address.
async fn hostile_plc(sim: SocketAddr, rewrite: Rewrite) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let rewrite = rewrite.clone();
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(sim).await else {
                    return;
                };
                while let Some(request) = read_frame(&mut client).await {
                    if upstream.write_all(&request).await.is_err() {
                        return;
                    }
                    let Some(reply) = read_frame(&mut upstream).await else {
                        return;
                    };
                    if let Some(bytes) = rewrite(reply) {
                        if client.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Re-computes the MBAP length after the PDU was edited.
fn fix_length(mut frame: Vec<u8>) -> Vec<u8> {
    let len = (frame.len() - 6) as u16;
    frame[4..6].copy_from_slice(&len.to_be_bytes());
    frame
}

fn is_register_reply(frame: &[u8]) -> bool {
    matches!(frame.get(7), Some(3 | 4))
}

async fn read_through(
    sim: SocketAddr,
    rewrite: Rewrite,
) -> (Result<Measurement, ModbusError>, bool) {
    let plc = hostile_plc(sim, rewrite).await;
    let mut cabinet = ModbusCabinet::connect(plc, RegisterMap::default_sim(), TIMEOUT)
        .await
        .expect("the hostile PLC accepts connections");
    // The client's own timeout bounds this; the outer one only turns a hang into a failure.
    let result = tokio::time::timeout(TIMEOUT * 20, cabinet.read_measurement())
        .await
        .expect("a hostile reply never hangs the read beyond its timeout");
    (result, cabinet.is_broken())
}

fn rewrite(f: impl Fn(Vec<u8>) -> Option<Vec<u8>> + Send + Sync + 'static) -> Rewrite {
    Arc::new(f)
}

#[tokio::test]
async fn nan_registers_are_a_decode_error_not_a_reading() {
    let sim = TestSim::start(false, 1).await;
    let (result, _) = read_through(
        sim.addr,
        rewrite(|mut f| {
            if is_register_reply(&f) {
                // 0x7FC0 in every word is a NaN whatever the word order.
                for pair in f[9..].chunks_mut(2) {
                    pair.copy_from_slice(&[0x7f, 0xc0]);
                }
            }
            Some(f)
        }),
    )
    .await;
    assert!(matches!(result, Err(ModbusError::Decode(_))), "{result:?}");
}

#[tokio::test]
async fn malformed_replies_fail_with_typed_errors_within_the_timeout() {
    let sim = TestSim::start(false, 1).await;
    type Check = fn(&Result<Measurement, ModbusError>) -> bool;
    let cases: Vec<(&str, Rewrite, Check)> = vec![
        (
            "too few registers",
            rewrite(|mut f| {
                if is_register_reply(&f) {
                    f.truncate(f.len() - 2);
                    f[8] -= 2;
                }
                Some(fix_length(f))
            }),
            |r| {
                matches!(
                    r,
                    Err(ModbusError::UnexpectedReply { .. } | ModbusError::Transport { .. })
                )
            },
        ),
        (
            "byte count disagrees with the data",
            rewrite(|mut f| {
                f[8] = 0xff;
                Some(f)
            }),
            |r| {
                matches!(
                    r,
                    Err(ModbusError::Transport { .. } | ModbusError::UnexpectedReply { .. })
                )
            },
        ),
        (
            "unknown exception code",
            rewrite(|f| {
                let mut e = f[..7].to_vec();
                e.extend_from_slice(&[f[7] | 0x80, 0x0b]);
                Some(fix_length(e))
            }),
            |r| matches!(r, Err(ModbusError::Exception { code: 0x0b, .. })),
        ),
        (
            "reply of another function",
            rewrite(|mut f| {
                f[7] = 0x01;
                Some(f)
            }),
            |r| {
                matches!(
                    r,
                    Err(ModbusError::UnexpectedReply { .. } | ModbusError::Transport { .. })
                )
            },
        ),
        (
            "wrong transaction id",
            rewrite(|mut f| {
                f[0] ^= 0xff;
                Some(f)
            }),
            |r| r.is_err(),
        ),
        (
            "truncated, then silence",
            rewrite(|f| Some(f[..f.len() / 2].to_vec())),
            |r| matches!(r, Err(ModbusError::Timeout { .. })),
        ),
        ("silence", rewrite(|_| None), |r| {
            matches!(r, Err(ModbusError::Timeout { .. }))
        }),
        (
            "huge announced length",
            rewrite(|mut f| {
                f[4..6].copy_from_slice(&[0xff, 0xff]);
                Some(f)
            }),
            |r| r.is_err(),
        ),
        (
            "random bytes",
            rewrite(|_| Some((0u8..=255).rev().collect())),
            |r| r.is_err(),
        ),
    ];
    for (name, rewrite, check) in cases {
        let (result, broken) = read_through(sim.addr, rewrite).await;
        assert!(check(&result), "{name}: {result:?}");
        if let Err(e) = &result {
            // A connection left out of step must not be reused.
            assert_eq!(broken, e.needs_reconnect(), "{name}: {e}");
        }
    }
}

#[tokio::test]
async fn seeded_corruptions_of_genuine_replies_never_yield_non_finite_readings() {
    let sim = TestSim::start(false, 1).await;
    let (mut ok, mut refused) = (0, 0);
    for case in 0..200u64 {
        let seed = 0x5eed_0b00 + case;
        let (result, _) = read_through(
            sim.addr,
            rewrite(move |mut f| {
                let mut rng = StdRng::seed_from_u64(seed);
                match rng.random_range(0..3) {
                    0 => {
                        for _ in 0..rng.random_range(1..4) {
                            let i = rng.random_range(0..f.len());
                            f[i] ^= 1 << rng.random_range(0..8);
                        }
                    }
                    1 => {
                        let cut = rng.random_range(0..f.len());
                        f.truncate(cut);
                    }
                    _ => {
                        // Data words only: the frame stays well formed.
                        for byte in f.iter_mut().skip(9) {
                            *byte = rng.random();
                        }
                    }
                }
                Some(f)
            }),
        )
        .await;
        match result {
            Ok(m) => {
                assert!(
                    [m.u, m.i, m.pa, m.pr].iter().all(|v| v.is_finite()),
                    "case {case}: {m:?}"
                );
                ok += 1;
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!("200 corrupted replies: {ok} decoded to finite readings, {refused} refused");
    assert!(refused > 0);
}
