//! The live view's ring, replay, windows and caps.

use super::*;
use crate::topics::Quantity;

fn quad(seq: u64) -> Quadruplet {
    Quadruplet {
        cabinet: "c1".into(),
        seq,
        ts: "2026-11-21T10:00:00.000Z".into(),
        u: 230.0,
        i: 1.0,
        pa: 200.0,
        pr: 5.0,
    }
}

fn ids(frames: &[Bytes]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| {
            let text = std::str::from_utf8(f).unwrap();
            text.strip_prefix("id: ")
                .unwrap()
                .split('\n')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn resume_replays_exactly_the_missed_events_and_falls_back_to_the_latest() {
    let live = Live::new(LiveLimits {
        ring: 8,
        ..LiveLimits::default()
    });
    for seq in 0..5 {
        live.on_quad(quad(seq));
    }
    let first = live.subscribe(None);
    assert_eq!(first.replay.len(), 1, "one latest quadruplet per cabinet");
    let newest = first.last_id;
    assert_eq!(ids(&first.replay), vec![newest]);
    for seq in 5..8 {
        live.on_quad(quad(seq));
    }
    let resumed = live.subscribe(Some(newest));
    assert_eq!(
        ids(&resumed.replay),
        vec![newest + 1, newest + 2, newest + 3]
    );
    // Too old for the ring (8 events kept), or from another run: the latest again.
    for seq in 8..20 {
        live.on_quad(quad(seq));
    }
    assert_eq!(live.subscribe(Some(newest)).replay.len(), 1);
    assert_eq!(live.subscribe(Some(u64::MAX)).replay.len(), 1);
    assert_eq!(live.subscribe(Some(1)).replay.len(), 1);
}

#[test]
fn four_averages_make_a_window_once_and_history_is_bounded() {
    let live = Live::new(LiveLimits {
        history: 3,
        ..LiveLimits::default()
    });
    for seq in 0..10 {
        live.on_quad(quad(seq));
    }
    let mut sub = live.subscribe(None);
    for round in 0..2 {
        for q in Quantity::ALL {
            let avg = Average {
                cabinet: "c1".into(),
                window: 7,
                quantity: q,
                mean: 1.0 + q.index() as f64,
                n: 4,
                min: 0.0,
                max: 10.0,
                from: "2026-11-21T10:00:00.000Z".into(),
                to: "2026-11-21T10:00:03.000Z".into(),
                digest: "0".repeat(64),
                agent: format!("a{round}"),
            };
            assert!(live.on_average(avg));
        }
    }
    let c = live.cabinet("c1").unwrap();
    assert_eq!(
        c.history
            .as_ref()
            .unwrap()
            .iter()
            .map(|q| q.seq)
            .collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    assert_eq!(
        c.windows.len(),
        1,
        "a re-published window is not counted twice"
    );
    assert_eq!((c.windows[0].u, c.windows[0].pr), (1.0, 4.0));
    assert_eq!(c.averages.len(), 4);
    let mut windows = 0;
    while let Ok(f) = sub.events.try_recv() {
        windows += usize::from(
            std::str::from_utf8(&f.bytes)
                .unwrap()
                .contains("event: window\n"),
        );
    }
    assert_eq!(windows, 1);
}

#[test]
fn keys_beyond_the_cap_are_refused() {
    let live = Live::new(LiveLimits {
        keys: 2,
        ..LiveLimits::default()
    });
    for (n, admitted) in [(1, true), (2, true), (3, false)] {
        let mut q = quad(0);
        q.cabinet = format!("c{n}");
        assert_eq!(live.on_quad(q), admitted);
    }
    assert_eq!(live.cabinets().len(), 2);
}
