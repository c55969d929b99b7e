//! Password hashing (argon2id, PHC strings) and the login check the engine's authentication
//! hook calls.
//!
//! Verifying an argon2 hash is slow on purpose (tens of milliseconds, ~19 MiB), so it runs on
//! tokio's blocking pool, never on the accept loop, and a semaphore bounds how many run at
//! once: a flood of CONNECTs queues (then is refused as busy) instead of exhausting memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

use crate::acl::Permissions;
use crate::config::User;

/// Why a password could not be hashed or a stored hash cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Hashing failed (the salt or parameters were rejected).
    #[error("cannot hash password: {0}")]
    Hash(String),
    /// A stored hash is not a PHC string argon2 understands.
    #[error("user {username:?}: password_hash is not an argon2 PHC string ({cause})")]
    BadStoredHash {
        /// The user whose hash is unusable.
        username: String,
        /// What the PHC parser said.
        cause: String,
    },
}

/// Hashes `password` with argon2id and a random salt, returning the PHC string to store
/// (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| AuthError::Hash(err.to_string()))
}

/// Checks that `phc` is a PHC string an argon2 verifier accepts (used when loading users).
pub(crate) fn check_stored_hash(username: &str, phc: &str) -> Result<(), AuthError> {
    let bad = |cause: String| AuthError::BadStoredHash {
        username: username.to_owned(),
        cause,
    };
    let parsed = PasswordHash::new(phc).map_err(|err| bad(err.to_string()))?;
    argon2::Algorithm::try_from(parsed.algorithm).map_err(|err| bad(err.to_string()))?;
    Ok(())
}

/// Why a login was refused; the hook turns it into the CONNACK code of the client's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No username sent (3.1.1: 0x05, 5: 0x87).
    NotAuthorized,
    /// Unknown user or wrong password (3.1.1: 0x04, 5: 0x86).
    BadCredentials,
    /// No verification slot within the connect timeout (3.1.1: 0x03, 5: 0x89).
    ServerBusy,
}

/// One known user: the stored hash and the permissions with `%u` already substituted.
struct Account {
    password_hash: Arc<str>,
    permissions: Arc<Permissions>,
}

/// The users table and the bounded verifier; absent when no users are configured.
pub(crate) struct Authenticator {
    accounts: HashMap<String, Account>,
    /// Verified against for unknown usernames, so their answer takes as long as a known one's.
    decoy_hash: Arc<str>,
    verifications: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl Authenticator {
    /// Builds the table; `concurrency` verifications run at once, a login waits at most
    /// `queue_timeout` for its turn.
    pub(crate) fn new(
        users: &[User],
        concurrency: usize,
        queue_timeout: Duration,
    ) -> Result<Authenticator, AuthError> {
        let accounts = users
            .iter()
            .map(|user| {
                let account = Account {
                    password_hash: Arc::from(user.password_hash.as_str()),
                    permissions: Arc::new(user.permissions().for_user(&user.username)),
                };
                (user.username.clone(), account)
            })
            .collect();
        Ok(Authenticator {
            accounts,
            decoy_hash: Arc::from(hash_password("wattchain decoy password")?),
            verifications: Arc::new(Semaphore::new(concurrency)),
            queue_timeout,
        })
    }

    /// The permissions of `username`, with `%u` substituted; `None` for an unknown user.
    pub(crate) fn permissions(&self, username: &str) -> Option<Arc<Permissions>> {
        self.accounts
            .get(username)
            .map(|account| Arc::clone(&account.permissions))
    }

    /// Decides a CONNECT's credentials: the user's permissions, or the CONNACK refusal.
    pub(crate) async fn login(
        &self,
        username: Option<&str>,
        password: &[u8],
    ) -> Result<Arc<Permissions>, Refusal> {
        let Some(username) = username else {
            return Err(Refusal::NotAuthorized);
        };
        let account = self.accounts.get(username);
        let hash = account.map_or_else(
            || Arc::clone(&self.decoy_hash),
            |a| Arc::clone(&a.password_hash),
        );
        let password = password.to_vec();
        let permit = tokio::time::timeout(
            self.queue_timeout,
            Arc::clone(&self.verifications).acquire_owned(),
        )
        .await;
        let Ok(Ok(permit)) = permit else {
            return Err(Refusal::ServerBusy);
        };
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(&password, &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        match account {
            Some(account) if verified => Ok(Arc::clone(&account.permissions)),
            _ => Err(Refusal::BadCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_a_salted_argon2id_phc_string_that_verifies_only_its_password() {
        let first = hash_password("wonderland").expect("hashes");
        let second = hash_password("wonderland").expect("hashes");
        assert!(first.starts_with("$argon2id$"), "{first}");
        assert_ne!(first, second, "a fresh salt each time");
        assert!(!first.contains("wonderland"));
        let parsed = PasswordHash::new(&first).expect("PHC");
        let argon = Argon2::default();
        assert!(argon.verify_password(b"wonderland", &parsed).is_ok());
        assert!(argon.verify_password(b"wonderlanD", &parsed).is_err());
        check_stored_hash("alice", &first).expect("usable stored hash");
        assert!(check_stored_hash("alice", "wonderland").is_err());
    }
}
