//! One relayed connection per client id at a time, with takeover done by the front door.
//!
//! rumqttd 0.20 reuses connection ids: when a client id reconnects while its previous
//! connection is still closing, the old connection's late "disconnect" can hit the new one
//! before its CONNACK, leaving a stale will entry that panics the listener on the next
//! reconnect. So the front door never lets rumqttd see two connections with one id: a new
//! CONNECT evicts the current holder, waits until that relay has closed its rumqttd side
//! completely (rumqttd has then queued the old disconnect), and only then connects upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

/// Per-client-id exclusivity for relayed connections.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    // std Mutex: held only for map updates, never across an await.
    slots: Mutex<HashMap<String, Slot>>,
}

#[derive(Debug)]
struct Slot {
    lock: Arc<AsyncMutex<()>>,
    /// Eviction signal of the newest contender for this id.
    newest: CancellationToken,
    /// Which claim is the newest contender.
    generation: u64,
}

/// The right to relay one client id; evicted when a newer connection claims the id.
#[derive(Debug)]
pub(crate) struct Claim {
    sessions: Arc<Sessions>,
    client_id: String,
    generation: u64,
    /// Cancelled when a newer connection with the same id arrives.
    pub evicted: CancellationToken,
    _guard: OwnedMutexGuard<()>,
}

impl Sessions {
    /// Evicts the current holder of `client_id` and waits until it has finished.
    pub(crate) async fn claim(self: &Arc<Self>, client_id: &str) -> Claim {
        let evicted = CancellationToken::new();
        let (lock, previous, generation) = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(client_id.to_owned()).or_insert_with(|| Slot {
                lock: Arc::new(AsyncMutex::new(())),
                newest: CancellationToken::new(),
                generation: 0,
            });
            slot.generation += 1;
            let previous = std::mem::replace(&mut slot.newest, evicted.clone());
            (Arc::clone(&slot.lock), previous, slot.generation)
        };
        previous.cancel();
        let guard = lock.lock_owned().await;
        Claim {
            sessions: Arc::clone(self),
            client_id: client_id.to_owned(),
            generation,
            evicted,
            _guard: guard,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut slots = self
            .sessions
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Forget the id unless a newer contender is waiting for it.
        let newest = slots
            .get(&self.client_id)
            .is_some_and(|slot| slot.generation == self.generation);
        if newest {
            slots.remove(&self.client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_claim_evicts_the_holder_and_waits_for_it() {
        let sessions = Arc::new(Sessions::default());
        let first = sessions.claim("dev").await;
        let contender = {
            let sessions = Arc::clone(&sessions);
            tokio::spawn(async move { sessions.claim("dev").await })
        };
        first.evicted.cancelled().await;
        assert!(
            !contender.is_finished(),
            "waits while the holder still runs"
        );
        drop(first);
        let second = contender.await.expect("claim task");
        assert!(!second.evicted.is_cancelled());
    }

    #[tokio::test]
    async fn released_ids_are_forgotten() {
        let sessions = Arc::new(Sessions::default());
        drop(sessions.claim("a").await);
        assert!(sessions.slots.lock().expect("lock").is_empty());
    }
}
